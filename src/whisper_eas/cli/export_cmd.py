"""`whisper-eas export`: ONNX graphs split at the sparsification layer, plus manifest.json.

With `--engines`, FP16 TensorRT engines are built beside the graphs (`engines.json`).
"""

from __future__ import annotations

from pathlib import Path

import click

from whisper_eas.cli.common import friendly_errors, model_option, prune_options, resolve_prune
from whisper_eas.exporter.graph_specs import ATTENTIONS
from whisper_eas.exporter.quantize import PRECISIONS


def _batch(value: str) -> int | None:
    if value == "dynamic":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"expected 'dynamic' or a batch size, got {value!r}", param_hint="--batch") from None


@click.command("export")
@model_option
@prune_options
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write.")
@click.option("--opset", default=17, show_default=True, help="ONNX opset (17 or newer).")
@click.option("--batch", default="dynamic", show_default=True, help="'dynamic' or a fixed batch size.")
@click.option("--precision", type=click.Choice(list(PRECISIONS)),
              help="Default: the model's sequential CPU precision in `whisper-eas defaults` (fp32 with --engines "
                   "or for a folder it does not name). int8: dynamic int8 weights for the encoder tail and the decoder (ONNX Runtime on a CPU); "
                   "int8-proj: only the decoder's vocabulary projection, its top 16 text tokens and the special "
                   "tokens recomputed in float32 (float32's greedy decisions, faster steps); int8-enc: int8-proj "
                   "plus the encoder tail's weight matmuls except the feed-forward output (fc2); int8-dec: int8-proj "
                   "plus the decoder's layer weights as weight-only int8 in blocks of 32 (MatMulNBits).")
@click.option("--attention", type=click.Choice(list(ATTENTIONS)), default="standard", show_default=True,
              help="The encoder's self-attention: standard ONNX ops (what TensorRT parses; the default exports), "
                   "or fused: one ONNX Runtime MultiHeadAttention node per block, ~3% faster on a CPU (the "
                   "standard graphs' query chunks save the same memory), but it moved speech-val long +0.82 WER "
                   "(float32 near-ties; docs/benchmarks.md, \"Fused encoder attention\").")
@click.option("--no-decoder-cache", is_flag=True, help="Re-export the decoder, not the model's cached one.")
@click.option("--engines", is_flag=True, help="Also build FP16 TensorRT engines (needs tensorrt and an NVIDIA GPU).")
@click.option("--max-batch", default=16, show_default=True, help="Engines: most windows per call.")
@click.option("--plugin/--no-plugin", "prune_plugin", default=True, show_default=True,
              help="Engines: prune with the AttentivePrune plugin (scored strategies), or the standard-op graph.")
@click.option("--aot-plugin", is_flag=True, help="Engines: embed the plugin's Triton kernel (fixed keep ratios).")
@friendly_errors
def command(model, dense, layer, keep_ratio, mass, strategy, scoring, query_stride, merge, out, opset, batch,
            precision, attention, no_decoder_cache, engines, max_batch, prune_plugin, aot_plugin) -> None:
    """Export encoder head / prune / tail and the KV-cached decoder to ONNX (default: the config and
    precision `trt-transcribe` runs, from `whisper-eas defaults`)."""
    from whisper_eas.config import format_prune
    from whisper_eas.defaults import default_precision
    from whisper_eas.exporter.export import ExportConfig, export_model

    if precision is None:
        precision = "fp32" if engines else default_precision(model)
    if attention == "fused" and engines:
        raise click.UsageError("--engines needs --attention standard: TensorRT does not parse ONNX Runtime's "
                               "fused MultiHeadAttention")
    settings = ExportConfig(opset=opset, batch=_batch(batch), reuse_decoder=not no_decoder_cache, precision=precision,
                            attention=attention)
    if precision != "fp32" and engines:
        raise click.UsageError("--engines builds FP16 TensorRT engines from float32 graphs: use --precision fp32")
    engine_config = _engine_config(max_batch, prune_plugin, aot_plugin) if engines else None
    prune = resolve_prune(model, dense, layer, keep_ratio, mass, strategy, scoring, query_stride, merge,
                          device="cuda" if engines else "cpu")  # engines: the GPU default
    manifest = export_model(model, prune, out, settings)
    click.echo(f"exported {manifest.model} [{format_prune(prune)}] {manifest.precision}, opset {opset}, "
               f"batch {batch} -> {out}")
    for name in manifest.files:
        size = (out / name).stat().st_size / 1e6
        click.echo(f"  {name:20s} {size:8.1f} MB  sha256 {manifest.files[name][:12]}")
    if engine_config is not None:
        _build(out, engine_config, reuse=not no_decoder_cache)


def _engine_config(max_batch: int, prune_plugin: bool, aot_plugin: bool):
    """Checked before the ONNX export runs, so a machine without TensorRT fails in a second."""
    from whisper_eas.deps import require_cuda, require_tensorrt
    from whisper_eas.engines.profiles import EngineConfig

    require_tensorrt("whisper-eas export --engines")
    require_cuda("whisper-eas export --engines")
    return EngineConfig(max_batch=max_batch, opt_batch=min(8, max_batch), prune_plugin=prune_plugin,
                        plugin_aot=aot_plugin)


def _build(out: Path, engine_config, reuse: bool) -> None:
    from whisper_eas.engines.builder import build_engines

    manifest = build_engines(out, engine_config, reuse_decoder=reuse)
    platform = manifest.platform
    form = ""
    if manifest.prune_form:
        form = f", prune: {manifest.prune_form}" + (" (AOT kernel)" if manifest.plugin_aot else "")
    click.echo(f"built FP16 engines with TensorRT {platform.tensorrt} for {platform.gpu} "
               f"(sm {platform.compute_capability}{form}) -> {out}")
    for graph, entry in manifest.engines.items():
        size = (out / entry.file).stat().st_size / 1e6
        click.echo(f"  {entry.file:20s} {size:8.1f} MB  from {entry.source}")
