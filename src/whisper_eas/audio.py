"""Audio in: any file soundfile (or ffmpeg, when installed) can read, as 16 kHz mono float32.

soundfile (libsndfile) reads wav, flac, ogg/opus and mp3 at any sample rate and channel count
without external tools; ffmpeg, when on PATH, covers everything else (m4a, aac, video files).
Every failure is an `AudioError` whose message names the file and the problem in one line, so a
batch of thousands of files can report the bad ones and carry on.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

from whisper_eas.errors import WhisperEasError

SAMPLE_RATE = 16000
# Extensions picked up when a directory is given (explicitly named files are always tried).
AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .m4a .aac .wma .aif .aiff .aifc .caf .w64 .webm .mka .mp4 .mkv".split()
)
_BLOCK_FRAMES = 1 << 20  # downmix in blocks: a long multichannel file never sits in memory whole


class AudioError(WhisperEasError, ValueError):
    """An input file that cannot be used as audio."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 and its rate; raises soundfile's errors (the caller classifies them)."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        rate, channels = f.samplerate, f.channels
        blocks = [block.reshape(-1, channels).mean(axis=1, dtype=np.float32)
                  for block in f.blocks(blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True)]
    mono = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return mono, rate


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """Decode with ffmpeg straight to 16 kHz mono float32."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(path, f"ffmpeg could not decode it ({reason[-1] if reason else 'unknown error'})")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy(), SAMPLE_RATE


def wav_truncation(path: Path) -> str | None:
    """For a RIFF/WAVE file, why its data chunk is cut short (libsndfile silently reads less), else None."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, length = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                if length in (0, 0xFFFFFFFF):  # streamed WAV: length unknown, not an error
                    return None
                have = size - pos - 8
                return None if have >= length else f"truncated: data chunk declares {length} bytes, file holds {have}"
            pos += 8 + length + (length & 1)
    return None


def _problem(error: Exception) -> str:
    """One-line description of a libsndfile failure."""
    text = re.sub(r"^Error opening .*?: ", "", _first_line(error)).removeprefix("Error : ")
    lowered = text.lower()
    if "format not recognised" in lowered or "unknown format" in lowered:
        return "not a recognised audio format"
    if "lost sync" in lowered or "unexpected end" in lowered or "short read" in lowered:
        return f"truncated or corrupt audio data ({text})"
    return f"unreadable audio ({text})"


def _decode(path: Path) -> tuple[np.ndarray, int]:
    try:
        data, rate = _read_soundfile(path)
    except Exception as soundfile_error:  # soundfile raises several types; ffmpeg may still read it
        if shutil.which("ffmpeg") is None:
            hint = "" if path.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3") else "; install ffmpeg for this format"
            raise AudioError(path, _problem(soundfile_error) + hint) from None
        return _read_ffmpeg(path)
    truncated = wav_truncation(path)
    if truncated:
        raise AudioError(path, truncated)
    return data, rate


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
    data, rate = _decode(path)
    if data.size and not np.isfinite(data).all():  # before resampling smears one bad sample around
        raise AudioError(path, "contains NaN or infinite samples")
    return check_samples(path, resample(data, rate))


def probe_duration(path: str | Path) -> float | None:
    """Duration in seconds from the file header (cheap; for progress bars), or None when unknown."""
    try:
        import soundfile as sf

        info = sf.info(str(path))
        return info.frames / info.samplerate if info.samplerate else None
    except Exception:  # unreadable here: load_audio reports why
        return None


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


__all__ = [
    "AUDIO_EXTENSIONS", "AudioError", "SAMPLE_RATE", "check_samples", "duration_s", "load_audio", "probe_duration",
    "resample", "wav_truncation",
]
