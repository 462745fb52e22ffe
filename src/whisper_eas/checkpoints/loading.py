"""Load a Whisper checkpoint for inference."""

from __future__ import annotations

import os

import torch

from whisper_eas.checkpoints.registry import resolve_model


def load_whisper(name_or_dir: str | os.PathLike, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """An HF `WhisperForConditionalGeneration` in eval mode, with the fused (SDPA) attention path."""
    from transformers import WhisperForConditionalGeneration

    path = resolve_model(name_or_dir)
    model = WhisperForConditionalGeneration.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
    model.eval().to(device)
    model.name_or_path = str(name_or_dir)
    return model
