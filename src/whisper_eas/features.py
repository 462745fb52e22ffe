"""Log-mel features exactly as Whisper computes them (STFT 400/160, Slaney mel, log10, 8-decade clamp).

openai/whisper featurizes long audio once and slices 30 s windows from it, so the clamp uses the
whole file's peak rather than each window's. `StreamMel` gives the same values window by window
from an audio stream: one pass finds the peak, later reads compute only the frames asked for
(with 200 samples of context on each side), so memory does not grow with the file's length.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Iterator

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
    log_spec = _log10_mel(stft[..., :-1], n_mels)
    return _finish(log_spec, float(log_spec.max()))


def _log10_mel(stft: torch.Tensor, n_mels: int) -> torch.Tensor:
    mel = mel_filters(n_mels) @ (stft.abs() ** 2)
    return torch.clamp(mel, min=1e-10).log10()


def _finish(log_spec: torch.Tensor, peak: float) -> torch.Tensor:
    """The 8-decade clamp below the file's peak, then Whisper's scaling."""
    log_spec = torch.maximum(log_spec, torch.tensor(peak, dtype=log_spec.dtype) - 8.0)
    return (log_spec + 4.0) / 4.0


class _Samples:
    """Forward-only reads of a block stream as Whisper's STFT sees it: reflected at the start,
    zeros past the end. Only the samples from the last read onwards are held."""

    def __init__(self, open_blocks: Callable[[], Iterator[np.ndarray]]):
        self._open = open_blocks
        self._restart()

    def _restart(self) -> None:
        self._blocks, self._held, self._start, self.ended = self._open(), np.zeros(0, np.float32), 0, False

    @property
    def count(self) -> int:
        """Samples read so far (the stream's length once `ended`)."""
        return self._start + len(self._held)

    def read(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b) of the reflected, zero-extended signal; `a` must not go backwards."""
        if max(a, 0) < self._start:
            self._restart()
        parts = [self._held]
        have = self.count
        while have < b and not self.ended:
            block = next(self._blocks, None)
            if block is None:
                self.ended = True
            else:
                parts.append(np.asarray(block, np.float32))
                have += len(block)
        self._held = np.concatenate(parts) if len(parts) > 1 else self._held
        out = np.zeros(b - a, np.float32)
        lo, hi = max(a, self._start), min(b, self.count)
        if hi > lo:
            out[lo - a : hi - a] = self._held[lo - self._start : hi - self._start]
        if a < 0:  # reflect: x[-1] = x[1], ... (the samples at 1..-a are still held: nothing was dropped yet)
            reach = min(-a, self.count - 1)
            out[-a - reach : -a] = self._held[1 : reach + 1][::-1]
        drop = max(a, 0) - self._start
        if drop > 0:
            self._held, self._start = self._held[drop:], self._start + drop
        return out


def _frames_log_spec(samples: _Samples, start: int, stop: int, n_mels: int) -> torch.Tensor:
    """[n_mels, stop - start] unclamped log10 mel of frames start..stop-1 (frame i centred on i * 160)."""
    segment = samples.read(start * HOP_LENGTH - N_FFT // 2, (stop - 1) * HOP_LENGTH + N_FFT // 2)
    stft = torch.stft(torch.from_numpy(segment), N_FFT, HOP_LENGTH, window=torch.hann_window(N_FFT),
                      center=False, return_complex=True)
    return _log10_mel(stft, n_mels)


class StreamMel:
    """The frames of `log_mel(audio, n_mels, padding=N_SAMPLES)`, computed on demand from a stream.

    `open_blocks(check)` starts a pass over the 16 kHz samples (`check=True` on the first pass,
    which may raise for unusable audio). Construction makes that pass to find the peak and length.
    """

    def __init__(self, open_blocks: Callable[[bool], Iterator[np.ndarray]], n_mels: int = 80):
        self.n_mels = n_mels
        scan, peak, start = _Samples(lambda: open_blocks(True)), -10.0, 0  # -10: the padding's zero frames
        while not scan.ended or (start - 1) * HOP_LENGTH - N_FFT // 2 < scan.count:
            peak = max(peak, float(_frames_log_spec(scan, start, start + N_FRAMES, n_mels).max()))
            start += N_FRAMES
        self.n_samples = scan.count
        self.peak = peak
        self._samples = _Samples(lambda: open_blocks(False))

    @property
    def content_frames(self) -> int:
        return self.n_samples // HOP_LENGTH

    def frames(self, start: int, stop: int) -> torch.Tensor:
        """[n_mels, stop - start] features; reads must not go backwards (else the stream restarts)."""
        if stop <= start:
            return torch.zeros(self.n_mels, 0)
        # Always a full window's frames: the mel product then runs the same kernel as on the whole file.
        log_spec = _frames_log_spec(self._samples, start, max(stop, start + N_FRAMES), self.n_mels)
        return _finish(log_spec[:, : stop - start], self.peak)

    def samples(self, start: int, stop: int) -> np.ndarray:
        """The 16 kHz samples under frames start..stop-1 (zeros past the end); forward reads, as `frames`."""
        return self._samples.read(start * HOP_LENGTH, stop * HOP_LENGTH)


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
