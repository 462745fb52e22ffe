"""One interface for every backend: encode windows, then decode them over a KV cache.

A runner is built for one model and one prune config. `encode(mel, dense=True)` always exists:
the quality guard re-runs degenerate windows dense on the same runner. Features, kept frame
indices, tokens and logits cross this interface as NumPy arrays (the ONNX Runtime path imports no
PyTorch); the encoder output stays in the backend's own arrays (torch tensors on a GPU).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from whisper_eas.config import PruneConfig
from whisper_eas.decoding import DecoderSession
from whisper_eas.tokenizer import WhisperTokenizer


@dataclass
class EncodedBatch:
    """Encoder output for B windows: backend-native hidden [B, K, D] and kept frame indices [B, K]
    (int64 array)."""

    hidden: Any
    kept: np.ndarray | None  # None when dense
    n_frames: int
    frame_mask: Any = None  # [B, K] bool torch tensor, True = a real frame (`padded`); None: all are

    @property
    def batch(self) -> int:
        return int(self.hidden.shape[0])

    @property
    def n_kept(self) -> int:
        return int(self.hidden.shape[1])

    def select(self, rows: list[int]) -> "EncodedBatch":
        """A sub-batch (windows that need a re-run, or one file's windows)."""
        rows = list(rows)  # numpy arrays and torch tensors (on any device) alike take a list of rows
        hidden = self.hidden[rows]
        kept = self.kept[rows] if self.kept is not None else None
        mask = self.frame_mask[rows] if self.frame_mask is not None else None
        return EncodedBatch(hidden, kept, self.n_frames, mask)

    @staticmethod
    def concat(parts: list["EncodedBatch"]) -> "EncodedBatch":
        """Batches encoded separately (same kept count), as one."""
        if len(parts) == 1:
            return parts[0]
        if any(p.frame_mask is not None for p in parts):
            return EncodedBatch.padded(parts)
        hiddens = [p.hidden for p in parts]
        if isinstance(hiddens[0], np.ndarray):
            hidden = np.concatenate(hiddens)
        else:
            import torch

            hidden = torch.cat(hiddens)
        kept = None if parts[0].kept is None else np.concatenate([p.kept for p in parts])
        return EncodedBatch(hidden, kept, parts[0].n_frames)

    @staticmethod
    def padded(parts: list["EncodedBatch"]) -> "EncodedBatch":
        """Batches with different kept counts (PyTorch tensors) as one, each padded with zero
        frames up to the longest, and a `frame_mask` that keeps cross-attention off the padding.
        Lets one decoder pass serve several prune configs (the search) or adaptive windows; the
        decoder's weights are then read once per step for all of them."""
        import torch

        longest = max(p.n_kept for p in parts)
        hidden, kept, masks = [], [], []
        for part in parts:
            pad = longest - part.n_kept
            hidden.append(torch.nn.functional.pad(part.hidden, (0, 0, 0, pad)))
            index = part.kept if part.kept is not None else np.broadcast_to(np.arange(part.n_kept), (part.batch, part.n_kept))
            kept.append(np.pad(index, ((0, 0), (0, pad)), constant_values=-1))
            mask = torch.ones(part.batch, part.n_kept, dtype=torch.bool, device=part.hidden.device)
            if part.frame_mask is not None:
                mask = part.frame_mask.to(torch.bool)
            masks.append(torch.nn.functional.pad(mask, (0, pad), value=False))
        return EncodedBatch(torch.cat(hidden), np.concatenate(kept), parts[0].n_frames, torch.cat(masks))


def encode_in_chunks(encode: Callable[[np.ndarray], EncodedBatch], mel: np.ndarray, rows: int | None,
                     prune: PruneConfig | None, dense: bool) -> EncodedBatch:
    """Encode `rows` windows at a time and concatenate.

    On a CPU one window's matmuls already fill the cores, and a larger encoder batch only adds
    cache misses (the scoring layer's attention probabilities are 54 MB per tiny window): ONNX
    Runtime encoded 16 windows one by one 1.5x faster than as one batch (PyTorch: no difference).
    Adaptive configs keep a batch-wide count, so they encode as one batch.
    """
    if rows is None or rows >= mel.shape[0] or (prune is not None and prune.per_input and not dense):
        return encode(mel)
    return EncodedBatch.concat([encode(mel[i : i + rows]) for i in range(0, mel.shape[0], rows)])


class Runner(ABC):
    """Backend-specific encoder and decoder; decoding logic lives in `whisper_eas.decoding`."""

    backend: str = "?"
    device: str = "cpu"
    prune: PruneConfig | None = None
    tokenizer: WhisperTokenizer
    n_mels: int = 80
    model_name: str = "?"
    reason: str = ""  # why `make_runner` chose this backend

    def load(self) -> "Runner":
        """Build what running needs (sessions, engines) if creating the runner did not; returns self."""
        return self

    def close(self) -> None:
        """Release sessions or engines (no-op where nothing is held)."""

    @abstractmethod
    def encode(self, mel: np.ndarray, dense: bool = False) -> EncodedBatch:
        """mel [B, n_mels, 3000] (an array, or a torch tensor) -> encoder output, pruned by
        `self.prune` unless `dense`."""

    @abstractmethod
    def decoder(self, encoded: EncodedBatch, group: int = 1) -> DecoderSession:
        """A decoder session over `encoded`, each window repeated `group` times (beam search)."""

    @property
    def approximate_decoder(self) -> bool:
        """True when `decoder` steps with approximate weights (int8 layers) and `exact_decoder`
        can re-decode a window without them: the guard then checks every window, not only sparse ones."""
        return False

    def exact_decoder(self, encoded: EncodedBatch, group: int = 1) -> DecoderSession:
        """As `decoder`, with the step whose greedy choices are float32's (the same where `decoder` is)."""
        return self.decoder(encoded, group)

    def describe(self) -> dict:
        return {
            "backend": self.backend,
            "device": self.device,
            "model": self.model_name,
            "prune": self.prune.to_dict() if self.prune else None,
        }


class DenseView(Runner):
    """A pruning runner seen as a dense one: its dense encoder and no prune config, so what decodes
    through it (the windows of long recordings under scope="whole") is treated as a dense model's
    windows (no guard re-run for the encoder's sake)."""

    prune = None

    def __init__(self, runner: Runner):
        self.runner = runner
        self.backend, self.device, self.tokenizer = runner.backend, runner.device, runner.tokenizer
        self.n_mels, self.model_name, self.reason = runner.n_mels, runner.model_name, runner.reason

    def encode(self, mel: np.ndarray, dense: bool = False) -> EncodedBatch:
        return self.runner.encode(mel, dense=True)

    def decoder(self, encoded: EncodedBatch, group: int = 1) -> DecoderSession:
        return self.runner.decoder(encoded, group)

    @property
    def approximate_decoder(self) -> bool:
        return self.runner.approximate_decoder

    def exact_decoder(self, encoded: EncodedBatch, group: int = 1) -> DecoderSession:
        return self.runner.exact_decoder(encoded, group)

    def __getattr__(self, name: str):  # the rest (alignment, detection helpers) is the runner's
        return getattr(self.runner, name)
