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

from whisper_eas.audio import SAMPLE_RATE

N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # 480000 samples in a window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames per second
INPUT_STRIDE = 2  # mel frames per encoder frame
TIME_PRECISION = INPUT_STRIDE / FRAMES_PER_SECOND  # 0.02 s per encoder frame / timestamp token


def _hertz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    mels = 3.0 * freq / 200.0
    high = freq >= 1000.0
    mels[high] = 15.0 + np.log(freq[high] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hertz(mels: np.ndarray) -> np.ndarray:
    freq = 200.0 * mels / 3.0
    high = mels >= 15.0
    freq[high] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[high] - 15.0))
    return freq


@lru_cache(maxsize=4)
def mel_filters(n_mels: int) -> np.ndarray:
    """[n_mels, 201] Slaney-normalized mel filterbank over 0-8 kHz, the one Whisper was trained with
    (transformers' `mel_filter_bank(norm="slaney", mel_scale="slaney")`, computed in float64)."""
    edges = _mel_to_hertz(np.linspace(*_hertz_to_mel(np.array([0.0, SAMPLE_RATE / 2])), n_mels + 2))
    bins = np.linspace(0, SAMPLE_RATE // 2, 1 + N_FFT // 2)
    slopes = edges[None, :] - bins[:, None]
    widths = np.diff(edges)
    bank = np.maximum(0.0, np.minimum(-slopes[:, :-2] / widths[:-1], slopes[:, 2:] / widths[1:]))
    bank *= 2.0 / (edges[2:] - edges[:-2])  # constant energy per filter
    return np.ascontiguousarray(bank.T, dtype=np.float32)


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    """torch.hann_window(400): the periodic Hann window."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def _power_spectrum(samples: np.ndarray) -> np.ndarray:
    """[201, frames] |STFT|^2 of frames every 160 samples (no centring: `samples` holds the context)."""
    frames = np.lib.stride_tricks.sliding_window_view(samples, N_FFT)[::HOP_LENGTH]
    spectrum = np.fft.rfft(frames * _hann(), axis=-1)
    return (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32).T


def log_mel(audio: np.ndarray, n_mels: int = 80, padding: int = 0) -> np.ndarray:
    """[n_mels, frames] log-mel of `audio` (16 kHz mono) with `padding` zero samples appended."""
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    if padding:
        samples = np.pad(samples, (0, padding))
    centred = np.pad(samples, N_FFT // 2, mode="reflect")  # torch.stft(center=True)
    log_spec = _log10_mel(_power_spectrum(centred)[:, :-1], n_mels)
    return _finish(log_spec, float(log_spec.max()))


def _log10_mel(power: np.ndarray, n_mels: int) -> np.ndarray:
    mel = mel_filters(n_mels) @ power
    return np.log10(np.maximum(mel, np.float32(1e-10)))


def _finish(log_spec: np.ndarray, peak: float) -> np.ndarray:
    """The 8-decade clamp below the file's peak, then Whisper's scaling."""
    log_spec = np.maximum(log_spec, np.float32(peak) - np.float32(8.0))
    return (log_spec + np.float32(4.0)) / np.float32(4.0)


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


def _frames_log_spec(samples: _Samples, start: int, stop: int, n_mels: int) -> np.ndarray:
    """[n_mels, stop - start] unclamped log10 mel of frames start..stop-1 (frame i centred on i * 160)."""
    segment = samples.read(start * HOP_LENGTH - N_FFT // 2, (stop - 1) * HOP_LENGTH + N_FFT // 2)
    return _log10_mel(_power_spectrum(segment), n_mels)


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

    def frames(self, start: int, stop: int) -> np.ndarray:
        """[n_mels, stop - start] features; reads must not go backwards (else the stream restarts)."""
        if stop <= start:
            return np.zeros((self.n_mels, 0), np.float32)
        # Always a full window's frames: the mel product then runs the same kernel as on the whole file.
        log_spec = _frames_log_spec(self._samples, start, max(stop, start + N_FRAMES), self.n_mels)
        return _finish(log_spec[:, : stop - start], self.peak)

    def samples(self, start: int, stop: int) -> np.ndarray:
        """The 16 kHz samples under frames start..stop-1 (zeros past the end); forward reads, as `frames`."""
        return self._samples.read(start * HOP_LENGTH, stop * HOP_LENGTH)


def pad_or_trim(mel: np.ndarray, length: int = N_FRAMES) -> np.ndarray:
    """Cut or zero-pad the last axis to `length` frames (a 30 s window)."""
    if mel.shape[-1] > length:
        return mel[..., :length]
    if mel.shape[-1] < length:
        return np.pad(mel, [(0, 0)] * (mel.ndim - 1) + [(0, length - mel.shape[-1])])
    return mel


def window_features(audio: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """[n_mels, 3000] features of one clip of at most 30 s, padded as Whisper pads it."""
    return pad_or_trim(log_mel(audio, n_mels, padding=N_SAMPLES))


def content_frames(mel: np.ndarray) -> np.ndarray:
    """Encoder frames holding audio, per window [B], from log-mel features [B, n_mels, 3000].

    Padding is digital silence: its log-mel columns sit at the clamp floor in every bin (a padded
    clip) or are zero (a long-form file's last window), so a column whose bins are all equal is
    padding, and speech never has 80 equal bins. Content ends after the last unequal column;
    two mel frames make one encoder frame. (`selection.content_frames`: the same on torch tensors,
    for the hooks and the exported prune graph.)
    """
    varies = mel.max(axis=1) != mel.min(axis=1)  # [B, 3000]
    last = (varies * np.arange(1, varies.shape[-1] + 1)).max(axis=-1)  # one past the last varying column
    return (last + 1) // 2


def speech_bounds(mel: np.ndarray, level: float = 0.35) -> np.ndarray:
    """Per window, the encoder frames where speech starts and where the audio content ends, [B, 2]
    int64 (`selection.speech_bounds` on arrays).

    Content ends after the last non-padding column (`content_frames`). Speech starts at the first
    mel frame whose mean log-mel rises `level` of the way from the content's quiet floor (10th
    percentile) to its loud level (95th percentile): a leading pause is not speech.
    """
    mel = np.asarray(mel, np.float32)
    ends = content_frames(mel).astype(np.int64)
    starts = np.zeros_like(ends)
    for i in range(mel.shape[0]):
        content = int(ends[i]) * 2
        if content <= 0:
            continue
        energy = mel[i, :, :content].mean(axis=0)
        low, high = np.quantile(energy, [0.10, 0.95])
        loud = np.flatnonzero(energy > low + level * (high - low))
        starts[i] = int(loud.min()) // 2 if loud.size else 0
    return np.stack([starts, ends], axis=-1)
