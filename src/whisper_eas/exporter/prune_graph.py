"""The frame-pruning step as a standard-op ONNX graph (TopK, Sort via TopK, Gather, CumSum...).

Traced from `whisper_eas.selection.prune_hidden`, the same code the PyTorch hooks run, so every
strategy a `PruneConfig` names (fixed or adaptive counts, attentive/uniform/truncate/coverage,
merge, dropped padding and onset_keep with fixed ratios) exports as it is. Any ONNX runtime executes the result. The TensorRT plugin form of the same
step (one `AttentivePrune` node, see `graph_specs.PRUNE_PLUGIN_*`) is `plugins/onnx_plugin_node.py`,
above this package; it keeps the I/O names of `graph_specs.prune`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from whisper_eas.config import PruneConfig
from whisper_eas.errors import ConfigError
from whisper_eas.exporter.graph_specs import BATCH, ModelDims, prune
from whisper_eas.exporter.modules import PruneStep
from whisper_eas.exporter.tracing import trace_to_onnx


EXAMPLE_BOUNDS = (40, 400)  # speech onset and content end (encoder frames) of the traced example


def example_inputs(dims: ModelDims, config: PruneConfig, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Hidden [B, T, D], positive normalized scores [B, T] and speech bounds [B, 2] for tracing."""
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(batch, dims.n_frames, dims.d_model, generator=generator)]
    if config.uses_attention:
        inputs.append(torch.softmax(torch.randn(batch, dims.n_frames, generator=generator), dim=-1))
    if config.needs_audio:
        inputs.append(torch.tensor([EXAMPLE_BOUNDS] * batch, dtype=torch.long))
    return tuple(inputs)


def export_prune(
    config: PruneConfig, dims: ModelDims, path: str | Path, opset: int = 17, batch: int | str = BATCH
) -> Path:
    """Write `prune.onnx` for `config`: (head_hidden[, frame_scores][, speech_bounds]) -> (kept_hidden,
    kept_index). Configs that read the audio (padding="drop", onset_keep) take `speech_bounds` [B, 2]
    (speech onset, content end, in encoder frames), which the runner computes on the host from the
    window's log-mel as the PyTorch hooks do (`selection.speech_bounds`)."""
    if config.padding == "drop" and config.adaptive:
        raise ConfigError(f"{config.format()}: adaptive counts within a speech region do not export; "
                          "give keep_ratio (k...) or run it on the PyTorch backend")
    spec = prune(dims, config, batch)
    args = example_inputs(dims, config, batch if isinstance(batch, int) else 2)
    return trace_to_onnx(PruneStep(config), args, spec, Path(path), opset)
