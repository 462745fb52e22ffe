"""One interface for every backend: encode windows, then decode them over a KV cache.

A runner is built for one model and one prune config. `encode(mel, dense=True)` always exists:
the quality guard re-runs degenerate windows dense on the same runner.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from whisper_eas.config import PruneConfig
from whisper_eas.decoding import DecoderSession
from whisper_eas.tokenizer import WhisperTokenizer


@dataclass
class EncodedBatch:
    """Encoder output for B windows: backend-native hidden [B, K, D] and kept frame indices [B, K]."""

    hidden: Any
    kept: torch.Tensor | None  # None when dense
    n_frames: int

    @property
    def batch(self) -> int:
        return int(self.hidden.shape[0])

    @property
    def n_kept(self) -> int:
        return int(self.hidden.shape[1])

    def select(self, rows: list[int]) -> "EncodedBatch":
        """A sub-batch (windows that need a re-run, or one file's windows)."""
        index = torch.as_tensor(rows, dtype=torch.long)
        hidden = self.hidden[index.to(self.hidden.device)] if isinstance(self.hidden, torch.Tensor) else self.hidden[rows]
        kept = self.kept[index] if self.kept is not None else None
        return EncodedBatch(hidden, kept, self.n_frames)


class Runner(ABC):
    """Backend-specific encoder and decoder; decoding logic lives in `whisper_eas.decoding`."""

    backend: str = "?"
    device: str = "cpu"
    prune: PruneConfig | None = None
    tokenizer: WhisperTokenizer
    n_mels: int = 80
    model_name: str = "?"

    @abstractmethod
    def encode(self, mel: torch.Tensor, dense: bool = False) -> EncodedBatch:
        """mel [B, n_mels, 3000] -> encoder output, pruned by `self.prune` unless `dense`."""

    @abstractmethod
    def decoder(self, encoded: EncodedBatch, group: int = 1) -> DecoderSession:
        """A decoder session over `encoded`, each window repeated `group` times (beam search)."""

    def describe(self) -> dict:
        return {
            "backend": self.backend,
            "device": self.device,
            "model": self.model_name,
            "prune": self.prune.to_dict() if self.prune else None,
        }
