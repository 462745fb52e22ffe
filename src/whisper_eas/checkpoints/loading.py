"""Load a Whisper checkpoint for inference."""

from __future__ import annotations

import os

import torch

from whisper_eas.checkpoints.quiet import quiet_transformers
from whisper_eas.checkpoints.registry import resolve_model
from whisper_eas.errors import WhisperEasError


class ModelLoadError(WhisperEasError, ValueError):
    """A model folder whose files exist but cannot be loaded; the message names the folder."""


def _one_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


def load_whisper_config(name_or_dir: str | os.PathLike):
    """The checkpoint's `WhisperConfig` (config.json only: no weights are read)."""
    from transformers import WhisperConfig

    path = resolve_model(name_or_dir)
    try:
        with quiet_transformers():
            return WhisperConfig.from_pretrained(path)
    except Exception as error:  # config.json that is not JSON or not a Whisper config
        raise ModelLoadError(f"{path}: cannot read this Whisper checkpoint's config ({_one_line(error)})") from None


def load_whisper(name_or_dir: str | os.PathLike, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """An HF `WhisperForConditionalGeneration` in eval mode, with the fused (SDPA) attention path."""
    from transformers import WhisperForConditionalGeneration

    path = resolve_model(name_or_dir)
    try:  # safetensors only: a pickled weights file is never unpickled
        with quiet_transformers():
            model = WhisperForConditionalGeneration.from_pretrained(path, dtype=dtype, attn_implementation="sdpa",
                                                                    use_safetensors=True)
    except Exception as error:  # corrupt weights, config.json that is not JSON or not a Whisper config, ...
        raise ModelLoadError(f"{path}: cannot load this Whisper checkpoint ({_one_line(error)})") from None
    model.eval().to(device)
    model.name_or_path = str(name_or_dir)
    return model
