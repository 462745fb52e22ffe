"""Export a Whisper model (dense or with a prune config) to ONNX graphs plus `manifest.json`.

The TorchScript exporter (`dynamo=False`) traces the small modules of `exporter.modules`, the
prune step (`exporter.prune_graph`) and the explicit-cache decoder (`decoder_step`). Names, shapes
and dynamic axes come from `graph_specs`.

Decoder graphs do not depend on the prune config, so one decoder export serves every (layer,
ratio) of a model: they are kept in `$WHISPER_EAS_HOME/onnx-decoders/<key>/`, keyed by the
decoder weights, opset, batch mode and exporter version, and hard-linked (or copied) into each
export folder, which stays self-contained.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import shutil
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from whisper_eas.config import PruneConfig
from whisper_eas.decoder_step import DecoderCrossKV
from whisper_eas.errors import ConfigError
from whisper_eas.exporter.graph_specs import (
    ATTENTIONS,
    BATCH,
    DECODER_EXPORT_VERSION,
    DECODER_GRAPHS,
    ENCODER_GRAPHS,
    EXACT_STEP_FILE,
    ModelDims,
    export_specs,
    split_layer,
)
from whisper_eas.exporter.align_graph import ALIGN_FILE, export_align_graph
from whisper_eas.exporter.chunked_attention import chunk_attention
from whisper_eas.exporter.external_data import externalize
from whisper_eas.exporter.manifest import MANIFEST, TOKENIZER, ExportManifest
from whisper_eas.exporter.modules import EncoderHead, EncoderTail, LayerwiseDecoderStep
from whisper_eas.exporter.prune_graph import export_prune
from whisper_eas.exporter.quantize import PRECISIONS, QuantizeConfig, quantize_graphs
from whisper_eas.exporter.tracing import trace_to_onnx
from whisper_eas.io_utils import link_or_copy, publish_folder, sha256_file
from whisper_eas.tokenizer import WhisperTokenizer

MIN_OPSET = 17  # LayerNormalization; ScatterElements(reduction=add) for merged frames needs 16
EXAMPLE_BATCH = 2  # traced example sizes: distinct from every model dimension on purpose
EXAMPLE_FRAMES = 37
EXAMPLE_PAST, EXAMPLE_NEW = 5, 3


def _batch_size(batch: int | str) -> int:
    return batch if isinstance(batch, int) else EXAMPLE_BATCH


def _export_encoder(model, dims: ModelDims, config: PruneConfig | None, specs, out: Path, opset: int,
                    attention: str = "standard") -> None:
    b = _batch_size(specs["encoder_head"].inputs[0].shape[0])
    layer = split_layer(config)
    mel = torch.randn(b, dims.n_mels, 3000) * 0.5
    head = specs["encoder_head"]
    trace_to_onnx(EncoderHead(model, layer, config, attention), (mel,), head, out / head.file, opset)
    if config is not None:
        export_prune(config, dims, out / specs["prune"].file, opset, batch=specs["prune"].inputs[0].shape[0])
    tail_in = torch.randn(b, EXAMPLE_FRAMES, dims.d_model)
    trace_to_onnx(EncoderTail(model, layer, attention), (tail_in,), specs["encoder_tail"],
                  out / specs["encoder_tail"].file, opset)
    for graph in ("encoder_head", "encoder_tail"):
        _in_query_chunks(out / specs[graph].file)


def _in_query_chunks(path: Path) -> None:
    """The graph's attention computed a chunk of query rows at a time (`chunked_attention`)."""
    import onnx

    model = onnx.load(str(path))
    if chunk_attention(model):
        path.unlink()  # never write through a hard link
        onnx.save(model, str(path))


def _export_decoder(model, dims: ModelDims, specs, out: Path, opset: int) -> None:
    b = _batch_size(specs["decoder_step"].inputs[0].shape[0])
    hidden = torch.randn(b, EXAMPLE_FRAMES, dims.d_model)
    cross = DecoderCrossKV(model)
    trace_to_onnx(cross, (hidden,), specs["decoder_cross"], out / specs["decoder_cross"].file, opset)
    with torch.no_grad():
        cross_k, cross_v = cross(hidden)
    past = (b, dims.decoder_heads, EXAMPLE_PAST, dims.decoder_head_dim)
    layers = range(dims.decoder_layers)
    args = (
        torch.randint(0, dims.vocab_size, (b, EXAMPLE_NEW)),
        torch.tensor(EXAMPLE_PAST),
        torch.tensor([0, EXAMPLE_NEW - 1]),
        *[torch.randn(past) for _ in range(2 * dims.decoder_layers)],
        *[cross_k[i] for i in layers],
        *[cross_v[i] for i in layers],
    )
    trace_to_onnx(LayerwiseDecoderStep(model), args, specs["decoder_step"], out / specs["decoder_step"].file, opset)


def decoder_key(model: nn.Module, dims: ModelDims, opset: int, batch: int | str) -> str:
    """Fingerprint of everything the decoder graphs depend on (weights, shapes, exporter)."""
    digest = hashlib.sha256()
    header = f"{DECODER_EXPORT_VERSION}|{opset}|{batch}|{torch.__version__}|{sorted(dims.to_dict().items())}"
    digest.update(header.encode())
    decoder = dict(model.model.decoder.state_dict())
    decoder["proj_out.weight"] = model.proj_out.weight
    for name in sorted(decoder):
        tensor = decoder[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:24]


def _decoder_cache(key: str) -> Path:
    from whisper_eas.checkpoints.registry import cache_home

    return cache_home() / "onnx-decoders" / key


def _cached_decoder(cache: Path, files: list[str]) -> bool:
    """The cache holds every decoder graph, unchanged since it was written (hard links share edits)."""
    try:
        recorded = json.loads((cache / "sha256.json").read_text())
    except (OSError, ValueError):
        return False
    return all((cache / f).is_file() and recorded.get(f) == sha256_file(cache / f) for f in files)


def _decoder_graphs(model, dims: ModelDims, specs, out: Path, opset: int, reuse: bool, key: str) -> None:
    files = [specs[name].file for name in DECODER_GRAPHS]
    cache = _decoder_cache(key)
    if reuse and _cached_decoder(cache, files):
        for f in files:
            link_or_copy(cache / f, out / f)
        return
    _export_decoder(model, dims, specs, out, opset)
    if reuse:
        hashes = json.dumps({f: sha256_file(out / f) for f in files})
        publish_folder(cache, {f: out / f for f in files}, {"sha256.json": hashes})


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("whisper-eas", "torch", "transformers", "onnx", "onnxruntime", "numpy", "polygraphy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


@dataclass(frozen=True)
class ExportConfig:
    """How the graphs are written (what gets pruned is the `PruneConfig`); validated once, here."""

    opset: int = MIN_OPSET
    batch: int | None = None  # None: a dynamic batch axis; an int fixes it (static engines)
    reuse_decoder: bool = True  # link the decoder graphs exported before for the same weights
    precision: str = "fp32"  # "int8": quantize the graphs of `quantize` after the float32 export
    quantize: QuantizeConfig | None = None  # int8: which graphs and how (default `QuantizeConfig()`)
    # the encoder's self-attention: "standard" ONNX ops (TensorRT engines), or "fused", one ONNX
    # Runtime MultiHeadAttention node per block (exporter.fused_attention; CPU exports)
    attention: str = "standard"

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise ConfigError(f"attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}")
        if self.opset < MIN_OPSET:
            raise ConfigError(f"opset {self.opset} is too old: the graphs need opset >= {MIN_OPSET}")
        if self.batch is not None and self.batch < 1:
            raise ConfigError(f"batch must be >= 1 or dynamic, got {self.batch}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.quantize is not None and self.precision == "fp32":
            raise ConfigError("a quantize config needs an int8 precision")

    @property
    def batch_axis(self) -> int | str:
        return self.batch if self.batch is not None else BATCH

    @property
    def quantization(self) -> QuantizeConfig | None:
        if self.precision == "fp32":
            return None
        return self.quantize or QuantizeConfig.for_precision(self.precision)


def export_model(
    model_name: str | Path,
    config: PruneConfig | None,
    out_dir: str | Path,
    settings: ExportConfig | None = None,
    hf_model: nn.Module | None = None,
    **changes: Any,
) -> ExportManifest:
    """Write the graphs of `model_name` split for `config` (None: dense) into `out_dir`, as
    `settings` says (keywords such as `opset=13` or `precision="int8"` change single fields).

    `precision="int8"` quantizes the graphs of `quantize` (default `QuantizeConfig()`: encoder tail
    and decoder) after the float32 export (`exporter.quantize`). Returns the manifest that was
    written (`out_dir/manifest.json`).
    """
    from whisper_eas.checkpoints.loading import load_whisper
    from whisper_eas.checkpoints.registry import EMBEDDED_MODELS, cache_home, resolve_model

    settings = replace(settings or ExportConfig(), **changes)
    opset, batch_axis, quantize = settings.opset, settings.batch_axis, settings.quantization
    model = hf_model if hf_model is not None else load_whisper(model_name)
    weight = next(model.parameters())
    if weight.dtype != torch.float32 or weight.device.type != "cpu":  # trace a float32 CPU copy
        model = copy.deepcopy(model).float().cpu()
    model = model.eval()
    dims = ModelDims.from_hf_config(model.config)
    if config is not None:
        config.check_model(dims.encoder_layers)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # a half-written folder never looks complete
    specs = export_specs(dims, config, batch_axis)
    for name in ENCODER_GRAPHS:  # a dense export over a sparse one leaves no stale prune.onnx
        if name not in specs:
            (out / f"{name}.onnx").unlink(missing_ok=True)
    key = decoder_key(model, dims, opset, batch_axis)
    _export_encoder(model, dims, config, specs, out, opset, settings.attention)
    _decoder_graphs(model, dims, specs, out, opset, settings.reuse_decoder, key)
    export_align_graph(model, out, opset)  # word timestamps on ONNX Runtime (a file, not a decoding graph)
    extra = []
    (out / EXACT_STEP_FILE).unlink(missing_ok=True)
    if quantize is not None:
        eot = WhisperTokenizer.from_file(resolve_model(model_name) / TOKENIZER, multilingual=dims.multilingual).eot
        if quantize.weight_only_bits and "decoder_step" in quantize.graphs:  # the guard's exact re-decode
            shutil.copyfile(out / specs["decoder_step"].file, out / EXACT_STEP_FILE)
            quantize_graphs(out, {"decoder_step": EXACT_STEP_FILE}, QuantizeConfig.for_precision("int8-proj"),
                            reuse=settings.reuse_decoder, first_special=eot)
            extra.append(EXACT_STEP_FILE)
        quantize_graphs(out, {g: specs[g].file for g in quantize.graphs if g in specs}, quantize,
                        reuse=settings.reuse_decoder, first_special=eot)
    (out / TOKENIZER).unlink(missing_ok=True)
    shutil.copyfile(resolve_model(model_name) / TOKENIZER, out / TOKENIZER)
    files = [spec.file for spec in specs.values()] + [TOKENIZER, ALIGN_FILE] + extra
    shared = cache_home() / "onnx-weights" if settings.reuse_decoder else None  # one copy per distinct graph
    files += [name for f in files if f.endswith(".onnx") and (name := externalize(out, f, shared=shared)) is not None]
    name = str(model_name) if str(model_name) in EMBEDDED_MODELS else str(Path(model_name).resolve())
    manifest = ExportManifest(
        directory=out,
        model=name,
        dims=dims,
        config=config,
        opset=opset,
        batch=batch_axis,
        files={f: sha256_file(out / f) for f in files},
        versions=library_versions(),
        decoder_key=key,
        quantization=quantize,
        attention=settings.attention,
    )
    manifest.write()
    return manifest
