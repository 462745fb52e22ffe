"""Log-mel features exactly as Whisper computes them (STFT 400/160, Slaney mel, log10, 8-decade clamp).

Long audio is featurized once and sliced into 30 s windows, as openai/whisper does, so the
clamp uses the whole file's peak rather than each window's.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from whisper_eas.audio import SAMPLE_RATE

N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # 480000 samples in a window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames per second
INPUT_STRIDE = 2  # mel frames per encoder frame
TIME_PRECISION = INPUT_STRIDE / FRAMES_PER_SECOND  # 0.02 s per encoder frame / timestamp token


@lru_cache(maxsize=4)
def mel_filters(n_mels: int) -> torch.Tensor:
    """[n_mels, 201] Slaney-normalized mel filterbank, the one Whisper was trained with."""
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(
        num_frequency_bins=1 + N_FFT // 2,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(np.asarray(bank, dtype=np.float32).T.copy())


def log_mel(audio: np.ndarray | torch.Tensor, n_mels: int = 80, padding: int = 0) -> torch.Tensor:
    """[n_mels, frames] log-mel of `audio` (16 kHz mono) with `padding` zero samples appended."""
    samples = torch.as_tensor(audio, dtype=torch.float32)
    if padding:
        samples = torch.nn.functional.pad(samples, (0, padding))
    window = torch.hann_window(N_FFT)
    stft = torch.stft(samples, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    power = stft[..., :-1].abs() ** 2
    mel = mel_filters(n_mels) @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def pad_or_trim(mel: torch.Tensor, length: int = N_FRAMES) -> torch.Tensor:
    """Cut or zero-pad the last axis to `length` frames (a 30 s window)."""
    if mel.shape[-1] > length:
        return mel[..., :length]
    if mel.shape[-1] < length:
        return torch.nn.functional.pad(mel, (0, length - mel.shape[-1]))
    return mel


def window_features(audio: np.ndarray, n_mels: int = 80) -> torch.Tensor:
    """[n_mels, 3000] features of one clip of at most 30 s, padded as Whisper pads it."""
    return pad_or_trim(log_mel(audio, n_mels, padding=N_SAMPLES))
