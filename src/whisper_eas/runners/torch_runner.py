"""PyTorch backend: the HF model with the sparsification hooks, and the explicit-cache decoder."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from whisper_eas.checkpoints.loading import load_whisper, load_whisper_config
from whisper_eas.checkpoints.registry import resolve_model
from whisper_eas.config import PruneConfig
from whisper_eas.decoder_step import DecoderCrossKV, DecoderStep, empty_self_cache
from whisper_eas.runners.base import EncodedBatch, Runner
from whisper_eas.sparsify import sparsified
from whisper_eas.tokenizer import WhisperTokenizer


def host_logits(logits: torch.Tensor) -> np.ndarray:
    """A step's logits for the shared decoding loop (NumPy, float32, on the host)."""
    return logits.detach().float().cpu().numpy()


def device_index(index: np.ndarray, device) -> torch.Tensor:
    """Rows (tokens, beam sources, kept rows) from the decoding loop, on the model's device."""
    return torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64)).to(device)


class TorchDecoderSession:
    """Self-attention cache grown by concatenation; cross keys/values fixed for the window."""

    def __init__(self, step: DecoderStep, self_kv, cross_kv, cross_mask=None):
        self.step_module = step
        self.self_k, self.self_v = self_kv
        self.cross_k, self.cross_v = cross_kv
        self.cross_mask = cross_mask
        self.offset = 0

    @torch.inference_mode()
    def step(self, tokens: np.ndarray, positions: Sequence[int] | None = None) -> np.ndarray:
        device = self.cross_k.device
        tokens = device_index(tokens, device)
        offset = torch.tensor(self.offset, device=device)
        wanted = None if positions is None else torch.tensor(positions, device=device)
        logits, self.self_k, self.self_v = self.step_module(
            tokens, offset, self.self_k, self.self_v, self.cross_k, self.cross_v, self.cross_mask, wanted
        )
        self.offset += tokens.shape[1]
        return host_logits(logits)

    @torch.inference_mode()
    def reorder(self, index: np.ndarray) -> None:
        index = device_index(index, self.self_k.device)
        self.self_k, self.self_v = self.self_k[:, index], self.self_v[:, index]

    @torch.inference_mode()
    def select(self, rows: np.ndarray) -> None:
        self.reorder(rows)
        rows = device_index(rows, self.self_k.device)
        self.cross_k, self.cross_v = self.cross_k[:, rows], self.cross_v[:, rows]
        if self.cross_mask is not None:
            self.cross_mask = self.cross_mask[rows]


class HFModelRunner(Runner):
    """What every runner over an in-process Hugging Face model sets up: the model (loaded, or
    shared with another runner through `hf_model`), the checked prune config, the tokenizer and
    the cross-attention key/value module. Subclasses add the encoder and decoder-step paths.

    Creating a runner reads the checkpoint's config.json only (prune config checked, tokenizer,
    n_mels), as the graph runners read their manifest only; `load()`, the first encode or the
    first use of `runner.model` loads the weights and builds the modules (`_build`)."""

    def __init__(self, model: str | Path, prune: PruneConfig | None, device: str, dtype: torch.dtype, hf_model=None,
                 tokenizer: WhisperTokenizer | None = None):
        self._model = hf_model
        self._built = False
        config = hf_model.config if hf_model is not None else load_whisper_config(model)
        if prune is not None:
            prune.check_model(config.encoder_layers)
        self.prune, self.device, self.dtype = prune, device, dtype
        self.model_name = str(model)
        self.n_mels = config.num_mel_bins
        # `tokenizer` with `hf_model`: a model that is no checkpoint folder (random weights in benchmarks)
        self.tokenizer = tokenizer or WhisperTokenizer.for_model(resolve_model(model), config.vocab_size)

    @property
    def model(self):
        """The Hugging Face model (loaded on first use)."""
        return self.load()._model

    def load(self) -> "HFModelRunner":
        if self._model is None:
            self._model = load_whisper(self.model_name, device=self.device, dtype=self.dtype)
        if not self._built:
            self._built = True
            self._build()
        return self

    def _build(self) -> None:
        """Modules over the loaded model (subclasses add theirs)."""
        self.cross_module = DecoderCrossKV(self.model).eval()


class TorchRunner(HFModelRunner):
    """Runs a Hugging Face Whisper model (any size) on CPU or CUDA, dense or sparsified."""

    backend = "pytorch"

    def __init__(
        self,
        model: str | Path = "tiny.en",
        prune: PruneConfig | None = None,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        hf_model=None,
        tokenizer: WhisperTokenizer | None = None,
    ):
        super().__init__(model, prune, device, dtype, hf_model, tokenizer)

    def _build(self) -> None:
        super()._build()
        self.step_module = DecoderStep(self.model).eval()

    @torch.inference_mode()
    def encode(self, mel: np.ndarray, dense: bool = False) -> EncodedBatch:
        self.load()
        mel = torch.as_tensor(mel).to(self.device, self.dtype)
        with sparsified(self.model, None if dense else self.prune) as record:
            hidden = self.model.model.encoder(mel).last_hidden_state
        kept = record.kept.cpu().numpy() if record.kept is not None else None
        return EncodedBatch(hidden, kept, n_frames=self.model.config.max_source_positions)

    @torch.inference_mode()
    def decoder(self, encoded: EncodedBatch, group: int = 1) -> TorchDecoderSession:
        self.load()
        hidden, mask = torch.as_tensor(encoded.hidden), encoded.frame_mask  # (another runner's arrays too)
        if group > 1:
            hidden = hidden.repeat_interleave(group, dim=0)
            mask = mask.repeat_interleave(group, dim=0) if mask is not None else None
        cross = self.cross_module(hidden)
        self_kv = empty_self_cache(self.model, hidden.shape[0], hidden.device, hidden.dtype)
        return TorchDecoderSession(self.step_module, self_kv, cross, mask.to(hidden.device) if mask is not None else None)
