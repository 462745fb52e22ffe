"""`whisper_eas::AttentivePrune`: the frame-pruning step as a TensorRT plugin (`tensorrt.plugin`).

Inputs: hidden [B, T, D] and frame scores [B, T] (float32). Outputs: kept hidden [B, K, D], kept
frame indices [B, K] (int64, time order) and the kept count (int32 scalar). K is the constant
`keep_count` of a fixed ratio; for adaptive configs it is data-dependent: the count output is the
plugin's size tensor, bounded by the config's `max_keep` share of T (`attributes.count_bounds`).

Two implementations, picked per ONNX node by its `aot` attribute (see `onnx_plugin_node`):
- `impl` (JIT, every config): runs `selection.prune_hidden` itself on the plugin's CUDA stream
  through torch, so the engine computes exactly what the PyTorch backend computes. Engines built
  with it need this module registered in the process that runs them (the TensorRT runner does so).
- `aot_impl` (fixed counts): the Triton kernel of `triton_prune`, compiled to PTX at build time
  and embedded in the engine, which then runs without Python.

Nothing here imports tensorrt until `register_plugin()` is called. No `from __future__ import
annotations`: `tensorrt.plugin` reads the decorated functions' annotations as classes.
"""

import inspect
from typing import Any, Tuple, Union

import torch

from whisper_eas.errors import ConfigError
from whisper_eas.plugins.attributes import (
    ATTRIBUTE_TYPES,
    PLUGIN_ID,
    config_from_attributes,
    count_bounds,
    optimum_count,
)
from whisper_eas.selection import prune_hidden

_registered = False


def plugin_compute(hidden: torch.Tensor, scores: torch.Tensor, attributes: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """What the JIT implementation computes from its inputs and attributes: (kept, index, count)."""
    config, n_frames = config_from_attributes(attributes)
    if hidden.shape[1] != n_frames:
        raise ConfigError(f"{PLUGIN_ID}: built for {n_frames} frames, got hidden of shape {tuple(hidden.shape)}")
    kept, index = prune_hidden(hidden, scores, config)
    return kept, index, torch.tensor(index.shape[1], dtype=torch.int32, device=hidden.device)


def _describe(trt, trtp, hidden, attributes: dict[str, Any]):
    """Output descriptors: K a constant for fixed counts, a size tensor with an upper bound otherwise."""
    config, n_frames = config_from_attributes(attributes)
    batch, width = hidden.shape_expr[0], hidden.shape_expr[2]
    if config.adaptive:
        count = trtp.size_tensor(trtp.ShapeExpr(optimum_count(config, n_frames)),
                                 trtp.ShapeExpr(count_bounds(config, n_frames)[1]))
        kept = count.expr()
    else:
        kept = config.keep_count(n_frames)
        count = trtp.from_shape_expr((), dtype=trt.int32)
    return (trtp.from_shape_expr((batch, kept, width), dtype=hidden.dtype),
            trtp.from_shape_expr((batch, kept), dtype=trt.int64), count)


def _run(hidden, scores, attributes: dict[str, Any], outputs, stream: int) -> None:
    """JIT body: torch views of TensorRT's buffers, `plugin_compute` on TensorRT's stream."""
    with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
        kept, index, count = plugin_compute(torch.as_tensor(hidden, device="cuda"),
                                            torch.as_tensor(scores, device="cuda"), attributes)
        kept_out, index_out = outputs[0], outputs[1]
        if kept_out.is_data_dependent:  # adaptive: declare the actual length of each output
            kept_out, index_out = kept_out.aliased(tuple(kept.shape)), index_out.aliased(tuple(index.shape))
        torch.as_tensor(kept_out, device="cuda").copy_(kept)
        torch.as_tensor(index_out, device="cuda").copy_(index)
        torch.as_tensor(outputs[2], device="cuda").reshape(-1).copy_(count.reshape(-1))


def _aot(trtp, hidden, attributes: dict[str, Any], outputs):
    """AOT body: the Triton kernel's PTX, its launch grid and scalar arguments."""
    from whisper_eas.plugins.triton_prune import BLOCK_J, KernelPlan, compile_ptx

    config, n_frames = config_from_attributes(attributes)
    plan = KernelPlan.for_config(config, n_frames)  # raises for adaptive configs
    name, ptx, threads, shared = compile_ptx(plan)
    launch = trtp.KernelLaunchParams()
    launch.grid_x = hidden.shape_expr[0]
    launch.grid_y = trtp.cdiv(outputs[0].shape_expr[1], BLOCK_J)
    launch.block_x = threads
    launch.shared_mem = shared
    scalars = trtp.SymIntExprs.from_tuple([trtp.SymInt32(e) for e in
                                           (hidden.shape_expr[1], hidden.shape_expr[2], outputs[0].shape_expr[1])])
    return name, ptx, launch, scalars


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def register_plugin() -> bool:
    """Register the plugin with TensorRT (once per process); True when the AOT kernel is available.

    The decorated functions spell out every attribute because `tensorrt.plugin` reads a plugin's
    attributes from their signatures; `ATTRIBUTE_TYPES` is checked against them.
    """
    global _registered
    from whisper_eas.deps import require_tensorrt

    trt = require_tensorrt(f"the {PLUGIN_ID} plugin")
    import tensorrt.plugin as trtp

    aot = triton_available() and hasattr(trtp, "aot_impl")  # aot_impl exists in newer TensorRT releases only
    if _registered:
        return aot

    @trtp.register(PLUGIN_ID)
    def describe(hidden: trtp.TensorDesc, scores: trtp.TensorDesc, layer: int, keep_ratio: float, strategy: str,
                 scoring: str, mass: float, min_keep: float, max_keep: float, query_stride: int, merge: int,
                 uniform_floor: float, n_frames: int, keep_count: int,
                 ) -> Tuple[trtp.TensorDesc, trtp.TensorDesc, trtp.TensorDesc]:
        return _describe(trt, trtp, hidden, _attributes(locals()))

    _check_signature(describe)

    @trtp.impl(PLUGIN_ID)
    def run(hidden, scores, layer, keep_ratio, strategy, scoring, mass, min_keep, max_keep, query_stride, merge,
            uniform_floor, n_frames, keep_count, outputs, stream) -> None:
        _run(hidden, scores, _attributes(locals()), outputs, stream)

    if aot:
        @trtp.aot_impl(PLUGIN_ID)
        def compile_kernel(hidden, scores, layer, keep_ratio, strategy, scoring, mass, min_keep, max_keep,
                           query_stride, merge, uniform_floor, n_frames, keep_count, outputs, tactic,
                           ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
            return _aot(trtp, hidden, _attributes(locals()), outputs)

    _registered = True
    return aot


def _attributes(scope: dict[str, Any]) -> dict[str, Any]:
    return {name: scope[name] for name in ATTRIBUTE_TYPES}


def _check_signature(describe) -> None:
    """The registered attributes are `ATTRIBUTE_TYPES`, in order: what the ONNX node carries."""
    parameters = list(inspect.signature(describe).parameters.values())[2:]
    registered = {p.name: p.annotation for p in parameters}
    if registered != ATTRIBUTE_TYPES or list(registered) != list(ATTRIBUTE_TYPES):
        raise RuntimeError(f"{PLUGIN_ID} registers {registered}, attributes.ATTRIBUTE_TYPES says {ATTRIBUTE_TYPES}")
