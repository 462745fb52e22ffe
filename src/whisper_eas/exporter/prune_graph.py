"""The frame-pruning step as a standard-op ONNX graph (TopK, Sort via TopK, Gather, CumSum...).

Traced from `whisper_eas.selection.prune_hidden`, the same code the PyTorch hooks run, so every
strategy a `PruneConfig` names (fixed or adaptive counts, attentive/uniform/truncate/coverage,
merge) exports as it is. Any ONNX runtime executes the result. The TensorRT plugin form of the same
step (one `AttentivePrune` node, see `graph_specs.PRUNE_PLUGIN_*`) is `plugins/onnx_plugin_node.py`,
above this package; it keeps the I/O names of `graph_specs.prune`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from whisper_eas.config import PruneConfig
from whisper_eas.exporter.graph_specs import BATCH, ModelDims, prune
from whisper_eas.exporter.modules import PruneStep
from whisper_eas.exporter.tracing import trace_to_onnx


def example_inputs(dims: ModelDims, config: PruneConfig, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Hidden [B, T, D] and positive, normalized scores [B, T] for tracing."""
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(batch, dims.n_frames, dims.d_model, generator=generator)
    if not config.uses_attention:
        return (hidden,)
    scores = torch.softmax(torch.randn(batch, dims.n_frames, generator=generator), dim=-1)
    return hidden, scores


def export_prune(
    config: PruneConfig, dims: ModelDims, path: str | Path, opset: int = 17, batch: int | str = BATCH
) -> Path:
    """Write `prune.onnx` for `config`: (head_hidden[, frame_scores]) -> (kept_hidden, kept_index)."""
    if config.needs_audio:
        raise ValueError("padding='drop' and onset_keep read the window's features, which the prune graph does "
                         "not take yet; export a config without them")
    spec = prune(dims, config, batch)
    args = example_inputs(dims, config, batch if isinstance(batch, int) else 2)
    return trace_to_onnx(PruneStep(config), args, spec, Path(path), opset)
