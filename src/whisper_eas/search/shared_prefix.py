"""Evaluate many prune configs on one batch while running the dense encoder only once.

Every config that prunes after layer L shares the dense computation up to L: the search keeps
the dense hidden state entering and leaving each block, then per config scores frames from the
scoring block's own q/k projections of that input, prunes its output and runs only the tail.
This is the same arithmetic as the hook path in `sparsify.py` (checked in tests), at a fraction
of the cost of re-encoding for every point of the grid.
"""

from __future__ import annotations

import torch
from torch import nn

from whisper_eas.config import PruneConfig
from whisper_eas.runners.base import EncodedBatch
from whisper_eas.selection import attention_scores, prune_hidden, speech_bounds
from whisper_eas.sparsify import encoder_stem, find_encoder, run_blocks


class DenseStates:
    """Hidden states entering every encoder block of a batch (index i = input of block i+1)."""

    @torch.inference_mode()
    def __init__(self, model: nn.Module, mel: torch.Tensor):
        self.encoder = find_encoder(model)
        self.bounds = speech_bounds(mel)  # speech start, content end per window (padding="drop", onset_keep)
        x = encoder_stem(self.encoder, mel)
        self.states = [x]
        for layer in self.encoder.layers:
            x = run_blocks([layer], x)
            self.states.append(x)

    @property
    def n_frames(self) -> int:
        return self.states[0].shape[1]

    @property
    def batch(self) -> int:
        return self.states[0].shape[0]

    def select(self, index: int) -> "DenseStates":
        """The states of one window (adaptive keep counts differ per window)."""
        one = object.__new__(DenseStates)
        one.encoder, one.states = self.encoder, [s[index : index + 1] for s in self.states]
        one.bounds = self.bounds[index : index + 1]
        return one

    @torch.inference_mode()
    def scores(self, config: PruneConfig) -> torch.Tensor | None:
        if not config.uses_attention:
            return None
        block = self.encoder.layers[config.layer - 1]
        attn = block.self_attn
        h = block.self_attn_layer_norm(self.states[config.layer - 1])
        return attention_scores(attn.q_proj(h), attn.k_proj(h), attn.num_heads, config.scoring, config.query_stride)

    @torch.inference_mode()
    def encode(self, config: PruneConfig | None) -> EncodedBatch:
        """The encoder output under `config` (None: dense) as the runners return it."""
        if config is None:
            return EncodedBatch(self.encoder.layer_norm(self.states[-1]), None, self.n_frames)
        config.check_model(len(self.encoder.layers))
        x, kept = prune_hidden(self.states[config.layer], self.scores(config), config, self.bounds)
        x = run_blocks(self.encoder.layers[config.layer :], x)
        return EncodedBatch(self.encoder.layer_norm(x), kept.cpu().numpy(), self.n_frames)
