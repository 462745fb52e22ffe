"""Audio in: any file soundfile (or ffmpeg, when installed) can read, as 16 kHz mono float32.

Every failure is an `AudioError` whose message names the file and the problem in one line.
"""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """An input file that cannot be used as audio."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data, rate


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(path, f"ffmpeg could not decode it ({reason[-1] if reason else 'unknown error'})")
    return np.frombuffer(proc.stdout, dtype=np.float32).reshape(-1, 1), SAMPLE_RATE


def resample(audio: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (anti-aliased) to `target` Hz."""
    if rate == target:
        return audio
    from scipy.signal import resample_poly

    ratio = Fraction(target, rate).limit_denominator(1000)
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


def load_audio(path: str | Path) -> np.ndarray:
    """Decode, downmix and resample to 16 kHz mono float32; reject empty, silent and non-finite audio."""
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "no such file")
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        data, rate = _read_soundfile(path)
    except Exception as soundfile_error:  # soundfile raises several types; fall back to ffmpeg
        if shutil.which("ffmpeg") is None:
            raise AudioError(path, f"unreadable audio ({_first_line(soundfile_error)})") from None
        data, rate = _read_ffmpeg(path)
    return check_samples(path, resample(data.mean(axis=1), rate))


def check_samples(path: str | Path, audio: np.ndarray) -> np.ndarray:
    """Reject arrays no transcription can use; returns contiguous float32."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise AudioError(path, f"expected mono samples, got shape {audio.shape}")
    if audio.size == 0:
        raise AudioError(path, "no audio samples")
    if not np.isfinite(audio).all():
        raise AudioError(path, "contains NaN or infinite samples")
    if float(np.abs(audio).max()) == 0.0:
        raise AudioError(path, "digital silence (every sample is zero)")
    return audio


def duration_s(audio: np.ndarray) -> float:
    return audio.shape[-1] / SAMPLE_RATE


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


__all__ = ["AudioError", "SAMPLE_RATE", "check_samples", "duration_s", "load_audio", "resample"]
