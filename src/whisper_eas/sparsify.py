"""Early attentive sparsification applied to a Hugging Face Whisper encoder, reversibly.

Three forward hooks on the scoring block do the work: two capture its query and key projections
(the layer itself still runs its fused SDPA attention), and one replaces the block's output with
the kept frames. Every later block, the final layer norm and the decoder's cross-attention then
run on the shorter sequence without further changes. Removing the hooks restores the model.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from whisper_eas.config import PruneConfig
from whisper_eas.selection import attention_scores, prune_hidden, speech_bounds


def find_encoder(model: nn.Module) -> nn.Module:
    """The `WhisperEncoder` inside a ForConditionalGeneration, a WhisperModel, or the encoder itself."""
    for candidate in (model, getattr(model, "model", None), getattr(model, "encoder", None)):
        if candidate is None:
            continue
        if hasattr(candidate, "layers") and hasattr(candidate, "conv1"):
            return candidate
        encoder = getattr(candidate, "encoder", None)
        if encoder is not None and hasattr(encoder, "conv1"):
            return encoder
    raise TypeError(f"{type(model).__name__} holds no Whisper encoder")


def block_output(output) -> torch.Tensor:
    """HF encoder blocks return a tensor in transformers 5.x, a tuple in older versions."""
    return output[0] if isinstance(output, tuple) else output


def run_blocks(blocks, x: torch.Tensor) -> torch.Tensor:
    """Encoder blocks in order on [B, T, D] (Whisper's encoder takes no attention mask)."""
    for block in blocks:
        x = block_output(block(x, None))
    return x


def encoder_stem(encoder: nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """Convolutions and position embeddings: mel [B, n_mels, 3000] -> [B, 1500, D]."""
    x = F.gelu(encoder.conv1(mel))
    x = F.gelu(encoder.conv2(x)).permute(0, 2, 1)
    return x + encoder.embed_positions.weight[: x.shape[1]]


@dataclass
class PruneRecord:
    """What the last encoder call kept: frame indices [B, K] in time order, and the input length T."""

    kept: torch.Tensor | None = None
    n_frames: int = 0
    calls: int = 0
    history: list[torch.Tensor] = field(default_factory=list)
    keep_history: bool = False

    @property
    def sparsity(self) -> float:
        """Share of frames dropped by the last call."""
        if self.kept is None or not self.n_frames:
            return 0.0
        return 1.0 - self.kept.shape[-1] / self.n_frames


class EncoderPruner:
    """Installs and removes the pruning hooks on one encoder block."""

    def __init__(self, model: nn.Module, config: PruneConfig):
        self.encoder = find_encoder(model)
        config.check_model(len(self.encoder.layers))
        self.config = config
        self.block = self.encoder.layers[config.layer - 1]
        self.n_heads = self.block.self_attn.num_heads
        self.record = PruneRecord()
        self._handles: list = []
        self._q: torch.Tensor | None = None
        self._k: torch.Tensor | None = None
        self._bounds: torch.Tensor | None = None

    def attach(self) -> "EncoderPruner":
        if self._handles:
            return self
        attn = self.block.self_attn
        if self.config.needs_audio:  # speech bounds come from the encoder's input features
            self._handles.append(self.encoder.register_forward_pre_hook(self._keep_content, with_kwargs=True))
        if self.config.uses_attention:
            self._handles.append(attn.q_proj.register_forward_hook(self._keep_q))
            self._handles.append(attn.k_proj.register_forward_hook(self._keep_k))
        self._handles.append(self.block.register_forward_hook(self._prune_output))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._q = self._k = None

    def _keep_content(self, _module, args, kwargs):
        mel = args[0] if args else kwargs.get("input_features")
        self._bounds = speech_bounds(mel) if mel is not None else None

    def _keep_q(self, _module, _inputs, output):
        self._q = output

    def _keep_k(self, _module, _inputs, output):
        self._k = output

    def scores(self) -> torch.Tensor | None:
        if not self.config.uses_attention:
            return None
        if self._q is None or self._k is None:
            raise RuntimeError("scoring block ran without its query/key projections")
        return attention_scores(self._q, self._k, self.n_heads, self.config.scoring, self.config.query_stride)

    def _prune_output(self, _module, _inputs, output):
        hidden = block_output(output)
        scores = self.scores()
        self._q = self._k = None
        kept, idx = prune_hidden(hidden, scores, self.config, self._bounds)
        self.record.kept, self.record.n_frames = idx, hidden.shape[1]
        self.record.calls += 1
        if self.record.keep_history:
            self.record.history.append(idx.detach().cpu())
        if isinstance(output, tuple):
            return (kept,) + tuple(output[1:])
        return kept


@contextmanager
def sparsified(model: nn.Module, config: PruneConfig | None) -> Iterator[PruneRecord]:
    """Run `model` with its encoder pruned by `config` inside the block; always restored after.

    `config=None` means dense: nothing is installed and the record stays empty.
    """
    if config is None:
        yield PruneRecord()
        return
    pruner = EncoderPruner(model, config).attach()
    try:
        yield pruner.record
    finally:
        pruner.detach()


def apply_sparsification(model: nn.Module, config: PruneConfig) -> EncoderPruner:
    """Install pruning until `.detach()` is called on the returned pruner (for long-lived models)."""
    return EncoderPruner(model, config).attach()
