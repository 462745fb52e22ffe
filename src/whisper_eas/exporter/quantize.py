"""int8 graphs: ONNX Runtime dynamic quantization of an export folder's weight matmuls.

`whisper-eas export --precision int8` exports float32 graphs as usual, then rewrites the graphs in
`INT8_GRAPHS` with `onnxruntime.quantization.quantize_dynamic`: weights int8 (per output channel
by default), activations quantized per call (u8, `DynamicQuantizeMatMul` after ORT's fusion).
Only matmuls with a constant weight are quantized: attention products, layer norms, softmax and
the embeddings stay float32. The encoder head (stem + blocks up to the scoring layer) and the
prune graph stay float32 too, so frame scores and the kept frames are exactly the float32 ones.

Why the decoder matters most: on long-form a window decodes ~100 tokens, and a tiny.en step
reads the 51864 x 384 output projection (80 MB in float32, 70% of the step's weights) from
memory every time. The projection is exported as a `Gemm` sharing the embedding (see
`OutputProjection`), which the dynamic quantizer does not handle, so it is first rewritten as a
`MatMul` on its own transposed copy (quantized to 20 MB; the float32 embedding stays for the
token lookup).

`--precision int8-proj` quantizes only that projection and rescores its candidates in float32
(`exporter.rescore`); `--precision int8-enc` adds the encoder tail's weight matmuls except each
block's fc2 (`ENCODER_FLOAT32_MATMULS`); `--precision int8-dec` adds the decoder step's layer
matmuls as weight-only int8 (`MatMulNBits`, 8 bits in blocks of 32 along the input, computed with
activations quantized per block of 32): a step reads ~70 MB, 33 of them float32 layer weights,
and is bound by that read. Per-block activation scales are what keep it close to float32 where the
per-tensor dynamic quantization of `int8` was not (speech-dev long +0.20 against +0.71).

Quantized graphs are cached by the float32 graph's sha256 and the settings
(`$WHISPER_EAS_HOME/onnx-int8/<key>/`), so the shared decoder graphs are quantized once per model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from whisper_eas.errors import MissingDependencyError
from whisper_eas.exporter.graph_specs import ENCODER_GRAPHS
from whisper_eas.exporter.onnx_edit import constant_value, constant_weight_gemm
from whisper_eas.exporter.rescore import FLOAT32_NODES, rescore_output_projection
from whisper_eas.io_utils import link_or_copy, publish_folder, sha256_file

# int8-proj: only the vocabulary projection, rescored (`rescore`); int8-enc: that, plus the encoder
# tail's weight matmuls except `ENCODER_FLOAT32_MATMULS`
PRECISIONS = ("fp32", "int8", "int8-proj", "int8-enc", "int8-dec")
RESCORE_TOP_K = 16  # text candidates recomputed in float32 per row (int8-proj)
INT8_GRAPHS = ("encoder_tail", "decoder_cross", "decoder_step")  # head and prune: float32 frame selection
QUANTIZE_VERSION = "1"  # bump when the rewrite below changes
# int8-enc keeps each block's second feed-forward matmul float32: its input is the GELU output, whose
# range is the widest in the encoder (tiny.en's last block: max 105x its median channel), and a
# per-tensor activation scale there cost the most (speech-dev: all int8 +0.37 WER points short,
# +0.30 long; without fc2 +0.08 and +0.10; docs/benchmarks.md)
ENCODER_FLOAT32_MATMULS = ("/fc2/",)
WEIGHT_ONLY_BLOCK = 32  # int8-dec: weights (and, in the kernel, activations) scaled per 32 inputs
WEIGHT_ONLY_ACCURACY = 4  # MatMulNBits accuracy_level 4: int8 products (VNNI), the fast CPU path


@dataclass(frozen=True)
class QuantizeConfig:
    """How an int8 export was made; recorded in manifest.json under `quantization`."""

    graphs: tuple[str, ...] = INT8_GRAPHS
    per_channel: bool = True  # one scale per output column: tiny.en next-token KL 0.011 vs 0.029 per tensor
    # "all" weight matmuls; only the vocabulary "projection" (next-token KL 0.0015); or
    # "encoder+projection": every weight matmul of the encoder graphs, the projection of the others
    scope: str = "all"
    method: str = "onnxruntime.quantize_dynamic"
    weight_type: str = "int8"
    rescore: int = 0  # > 0: int8 projection over text tokens, top `rescore` and specials exact (`exporter.rescore`)
    keep_float: tuple[str, ...] = ()  # weight matmuls whose node name contains one of these stay float32
    weight_only_bits: int = 0  # > 0: the other weight matmuls of `graphs` as MatMulNBits of these bits (int8-dec)

    @property
    def precision(self) -> str:
        """The `--precision` this config is: int8-proj for the rescored projection alone, int8-enc
        for that plus the encoder."""
        if self.rescore and self.scope == "projection":
            return "int8-dec" if self.weight_only_bits else "int8-proj"
        if self.rescore and self.scope == "encoder+projection":
            return "int8-enc"
        return "int8"

    def projection_only(self, graph: str) -> bool:
        """Whether only the vocabulary projection of this graph (its name in `graph_specs`) is quantized."""
        return self.scope == "projection" or (self.scope == "encoder+projection" and graph not in ENCODER_GRAPHS)

    @classmethod
    def for_precision(cls, precision: str) -> "QuantizeConfig":
        """What `--precision` quantizes: int8 the encoder tail and decoder; int8-proj the decoder
        step's vocabulary projection only, with exact rescoring (`exporter.rescore`)."""
        if precision == "int8-proj":
            return cls(graphs=("decoder_step",), scope="projection", rescore=RESCORE_TOP_K)
        if precision == "int8-dec":
            return cls(graphs=("decoder_step",), scope="projection", rescore=RESCORE_TOP_K, weight_only_bits=8)
        if precision == "int8-enc":
            return cls(graphs=("encoder_tail", "decoder_step"), scope="encoder+projection", rescore=RESCORE_TOP_K,
                       keep_float=ENCODER_FLOAT32_MATMULS)
        return cls()

    def to_dict(self) -> dict:
        data = {**asdict(self), "graphs": list(self.graphs), "keep_float": list(self.keep_float)}
        for optional in ("rescore", "keep_float", "weight_only_bits"):  # older manifests read the same
            if not data[optional]:
                del data[optional]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "QuantizeConfig":
        return cls(graphs=tuple(data["graphs"]), per_channel=bool(data["per_channel"]),
                   method=str(data.get("method", cls.method)), weight_type=str(data.get("weight_type", "int8")),
                   scope=str(data.get("scope", "all")), rescore=int(data.get("rescore", 0)),
                   keep_float=tuple(data.get("keep_float", ())), weight_only_bits=int(data.get("weight_only_bits", 0)))


def _quantization():
    try:
        from onnxruntime import quantization
    except ImportError as error:
        raise MissingDependencyError("int8 export needs onnxruntime: pip install 'whisper-eas[onnx]'") from error
    return quantization


def untie_output_projection(model) -> int:
    """Rewrite each `Gemm(x, W, b, transB=1)` with a constant W as `MatMul(x, W^T) (+ b)`.

    The dynamic quantizer handles MatMul, not Gemm. The transposed copy is a new initializer, so a
    W shared with the embedding `Gather` stays as it is; an all-zero bias (Whisper has none) is
    dropped. Returns how many nodes were rewritten.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    rewritten = 0
    for node in list(graph.node):
        parts = constant_weight_gemm(graph, node)
        if parts is None:
            continue
        weight, attrs = parts
        name = f"{node.input[1]}_int8_t"
        graph.initializer.append(numpy_helper.from_array(
            np.ascontiguousarray(weight.T if attrs.get("transB", 0) else weight), name))
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        bias_value = constant_value(graph, bias) if bias else None
        if bias_value is not None and not bias_value.any():
            bias = None
        out = node.output[0]
        new = [helper.make_node("MatMul", [node.input[0], name], [f"{out}_nobias" if bias else out],
                                name=f"{node.name or 'gemm'}_matmul")]
        if bias:
            new.append(helper.make_node("Add", [f"{out}_nobias", bias], [out], name=f"{node.name or 'gemm'}_bias"))
        position = list(graph.node).index(node)
        graph.node.remove(node)
        for offset, item in enumerate(new):
            graph.node.insert(position + offset, item)
        rewritten += 1
    return rewritten


def _cache_key(source_sha256: str, config: QuantizeConfig, first_special: int | None = None) -> str:
    try:
        ort_version = metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:  # pragma: no cover
        ort_version = "?"
    header = f"{QUANTIZE_VERSION}|{ort_version}|{config.per_channel}|{config.weight_type}|{source_sha256}"
    if config.scope != "all":
        header += f"|{config.scope}"
    if config.rescore:
        header += f"|rescore{config.rescore}@{first_special}"
    if config.keep_float:
        header += "|float32:" + ",".join(config.keep_float)
    if config.weight_only_bits:
        header += f"|nbits{config.weight_only_bits}b{WEIGHT_ONLY_BLOCK}a{WEIGHT_ONLY_ACCURACY}v2"
    return hashlib.sha256(header.encode()).hexdigest()[:24]


def quantize_graph(source: Path, target: Path, config: QuantizeConfig, first_special: int | None = None, *,
                   graph: str) -> None:
    """Dynamic int8 quantization of one float32 graph file into `target` (may equal `source`).
    `first_special`: the end-of-text id, from which logits stay float32 when `config.rescore`;
    `graph`: the graph's name (`graph_specs`), which tells what `config.scope` quantizes in it."""
    import onnx


    quantization = _quantization()
    model = onnx.load(str(source))
    projection_only = config.projection_only(graph)
    rescored = None
    if config.rescore and projection_only:
        if first_special is None:
            raise ValueError("rescoring needs the first special token id (end-of-text)")
        rescored = rescore_output_projection(model, first_special, config.rescore)
    untie_output_projection(model)
    only = None
    if projection_only:
        only = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1].endswith("_int8_t")]
        only += [rescored] if rescored else []
    excluded = list(FLOAT32_NODES) + [n.name for n in model.graph.node
                                      if n.op_type == "MatMul" and any(part in n.name for part in config.keep_float)]
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        untied = Path(scratch) / "untied.onnx"
        onnx.save(model, str(untied))
        quantized = Path(scratch) / "quantized.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer warns on the root logger about optional pre-processing
        try:
            quantization.quantize_dynamic(
                str(untied), str(quantized), weight_type=quantization.QuantType.QInt8,
                per_channel=config.per_channel, op_types_to_quantize=["MatMul"], nodes_to_quantize=only,
                nodes_to_exclude=excluded,
                extra_options={"MatMulConstBOnly": True},
            )
        finally:
            root.setLevel(level)
        if config.weight_only_bits:
            weight_only(quantized, config.weight_only_bits, excluded)
        quantized.replace(target)


def weight_only(path: Path, bits: int, excluded: list[str]) -> None:
    """Rewrite, in place, the float32 matmuls with a constant weight that are not `excluded` as
    weight-only `MatMulNBits` (blocks of `WEIGHT_ONLY_BLOCK`, symmetric, `WEIGHT_ONLY_ACCURACY`)."""
    import onnx

    quantization = _quantization()
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    model = onnx.load(str(path))
    settings = dict(bits=bits, block_size=WEIGHT_ONLY_BLOCK, is_symmetric=True, accuracy_level=WEIGHT_ONLY_ACCURACY)
    # every MatMul with a constant weight is rewritten unless excluded (`nodes_to_include` only adds to that)
    quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=excluded, algo_config=DefaultWeightOnlyQuantConfig(**settings),
                                     quant_format=quantization.QuantFormat.QOperator, **settings)
    logger = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = logger.level
    logger.setLevel(logging.WARNING)  # one INFO line per node otherwise
    try:
        quantizer.process()
    finally:
        logger.setLevel(level)
    quantizer.model.save_model_to_file(str(path), use_external_data_format=False)


def quantize_graphs(directory: Path, files: dict[str, str], config: QuantizeConfig, reuse: bool = True,
                    first_special: int | None = None) -> None:
    """Quantize `files` (graph name -> file) of an export folder in place, through the int8 cache when `reuse`."""
    from whisper_eas.checkpoints.registry import cache_home

    for graph, name in files.items():
        path = directory / name
        cache = cache_home() / "onnx-int8" / _cache_key(sha256_file(path), config, first_special)
        if reuse and _cached(cache, name):
            path.unlink()  # may be a hard link into the float32 decoder cache: never write through it
            link_or_copy(cache / name, path)
            continue
        staged = directory / f".{name}.int8"
        quantize_graph(path, staged, config, first_special, graph=graph)
        path.unlink()
        staged.replace(path)
        if reuse:
            publish_folder(cache, {name: path}, {"sha256.json": json.dumps({name: sha256_file(path)})})


def _cached(cache: Path, name: str) -> bool:
    try:
        recorded = json.loads((cache / "sha256.json").read_text())
    except (OSError, ValueError):
        return False
    return (cache / name).is_file() and recorded.get(name) == sha256_file(cache / name)
