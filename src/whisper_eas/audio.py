"""Audio in: any file soundfile (or ffmpeg, when installed) can read, as 16 kHz mono float32.

soundfile (libsndfile) reads wav, flac, ogg/opus and mp3 at any sample rate and channel count
without external tools; ffmpeg, when on PATH, covers everything else (m4a, aac, video files).
Every failure is an `AudioError` whose message names the file and the problem in one line, so a
batch of thousands of files can report the bad ones and carry on.

Files are read block by block (`AudioStream`): only the frames a decoder actually returned are
used (a short read means a truncated file), resampling runs on overlapping blocks with the same
result as on the whole file, and nothing holds a whole long recording in memory.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from whisper_eas.errors import WhisperEasError

SAMPLE_RATE = 16000
# Extensions picked up when a directory is given (explicitly named files are always tried).
AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .m4a .aac .wma .aif .aiff .aifc .caf .w64 .webm .mka .mp4 .mkv".split()
)
BLOCK_FRAMES = 1 << 19  # frames decoded at a time (~33 s at 16 kHz)
MAX_PEAK = 8.0  # float samples are in [-1, 1]; far beyond is integer PCM passed unscaled, or garbage
_INT_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.int8): 128.0}


def display_path(path: str | os.PathLike) -> str:
    """The path as printable text: bytes that are not UTF-8 (surrogate-escaped by the OS layer)
    are shown as `\\xNN`, so messages and JSON stay valid text."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


class AudioError(WhisperEasError, ValueError):
    """An input file that cannot be used as audio."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path, self.problem = display_path(path), problem
        super().__init__(f"{self.path}: {problem}")


Blocks = Iterator[np.ndarray]


@dataclass
class AudioStream:
    """One input as 16 kHz mono float32 blocks; `blocks()` starts a fresh pass each call.

    The first pass with `check=True` validates (NaN/Inf, amplitude, silence, truncation) and
    fills `n_samples` and `warnings`; later passes re-decode without checks.
    """

    source: str
    _open: Callable[[], Blocks]
    allow_partial: bool = False
    n_samples: int | None = None
    warnings: list[str] = field(default_factory=list)

    def blocks(self, check: bool = False) -> Blocks:
        if not check:
            try:
                yield from self._open()
            except _Partial:  # the checked pass already judged (and allowed) it
                pass
            return
        count, peak = 0, 0.0
        try:
            for block in self._open():
                if not np.isfinite(block).all():
                    raise AudioError(self.source, "contains NaN or infinite samples")
                count += block.size
                if block.size:
                    peak = max(peak, float(np.abs(block).max()))
                yield block
        except _Partial as partial:
            if not self.allow_partial:
                raise AudioError(self.source, f"{partial} (--allow-partial transcribes what could be decoded)") from None
            self.warnings.append(f"partial decode: {partial}")
        _check_level(self.source, count, peak)
        self.n_samples = count

    def read_all(self) -> np.ndarray:
        """The whole stream as one array (checked): for short clips."""
        blocks = list(self.blocks(check=True))
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


class _Partial(Exception):
    """A decoder stopped before the end of the file; the message says how far it got."""


def _check_level(source: str, count: int, peak: float) -> None:
    if count == 0:
        raise AudioError(source, "no audio samples")
    if peak == 0.0:
        raise AudioError(source, "digital silence (every sample is zero)")
    if peak > MAX_PEAK:
        raise AudioError(source, f"sample peak {peak:.3g} is far outside [-1, 1] (unscaled integer PCM? "
                                 "divide int16 values by 32768)")


# ---- decoders -------------------------------------------------------------------------------


def _soundfile_blocks(path: Path) -> Iterator[tuple[np.ndarray, int]]:
    """(mono float32 block at the file's rate, rate); raises `_Partial` on a short read."""
    import soundfile as sf

    with sf.SoundFile(os.fsencode(path)) as f:  # bytes: a name that is not UTF-8 opens too
        rate, channels, declared = f.samplerate, f.channels, f.frames
        buffer = np.empty((BLOCK_FRAMES, channels), np.float32)
        got = 0
        while True:
            block = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True, out=buffer)  # only frames decoded
            got += len(block)
            if len(block):
                yield block.mean(axis=1, dtype=np.float32), rate
            if len(block) < BLOCK_FRAMES:
                break
    if 0 < declared < (1 << 62) and got < declared:
        raise _Partial(f"truncated: the header declares {declared / rate:.2f} s, "
                       f"only {got / rate:.2f} s could be decoded")


def _ffmpeg_command(path: Path) -> list[str]:
    # `file:` so a name such as "concat:a|b" or "http://x" is never read as a protocol URL.
    return ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-i", f"file:{os.path.abspath(path)}",
            "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"]


def _ffmpeg_blocks(path: Path, partial_hint: str | None) -> Blocks:
    """16 kHz mono float32 from an ffmpeg pipe; decode errors after some output are `_Partial`."""
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty ffmpeg never blocks
        proc = subprocess.Popen(_ffmpeg_command(path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=errors)
        got, rest = 0, b""
        try:
            while chunk := proc.stdout.read(BLOCK_FRAMES * 4):  # type: ignore[union-attr]
                chunk, rest = rest + chunk, b""
                usable = len(chunk) - len(chunk) % 4
                chunk, rest = chunk[:usable], chunk[usable:]
                got += usable // 4
                yield np.frombuffer(chunk, dtype=np.float32).copy()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
        errors.seek(0)
        lines = errors.read().decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 and got == 0:
        raise AudioError(path, f"ffmpeg could not decode it ({lines[-1] if lines else 'unknown error'})")
    if proc.returncode != 0 or lines or partial_hint:
        reason = partial_hint or (lines[-1] if lines else f"ffmpeg exited with {proc.returncode}")
        raise _Partial(f"corrupt or truncated: ffmpeg decoded {got / SAMPLE_RATE:.2f} s ({reason})")


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


def _check_file(path: Path) -> None:
    """Only regular, non-empty files: a FIFO or device would block or never end."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise AudioError(path, "no such file") from None
    except OSError as error:
        raise AudioError(path, f"cannot stat it ({error.strerror or error})") from None
    if stat.S_ISDIR(mode):
        raise AudioError(path, "not a regular file (a directory)")
    if not stat.S_ISREG(mode):
        raise AudioError(path, "not a regular file (FIFO, socket or device)")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied")


def _file_blocks(path: Path) -> Blocks:
    """Decode `path` to 16 kHz mono blocks: soundfile, else ffmpeg (marked partial when soundfile
    knew the format but found the data broken)."""
    truncated = wav_truncation(path)
    if truncated:
        raise AudioError(path, truncated)
    decoded = _soundfile_blocks(path)
    try:
        first = next(decoded, None)
    except _Partial:
        raise
    except Exception as soundfile_error:  # soundfile raises several types; ffmpeg may still read it
        problem = _problem(soundfile_error)
        if shutil.which("ffmpeg") is None:
            hint = "" if path.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3") else "; install ffmpeg for this format"
            raise AudioError(path, problem + hint) from None
        hint = f"soundfile: {problem}" if problem.startswith("truncated or corrupt") else None
        yield from _ffmpeg_blocks(path, hint)
        return
    if first is None:
        return
    yield from _resampled(_chain(first, decoded), first[1])


def _chain(first: tuple[np.ndarray, int], rest: Iterator[tuple[np.ndarray, int]]) -> Blocks:
    yield first[0]
    try:
        for block, _ in rest:
            yield block
    except _Partial:
        raise
    except Exception as error:  # a decode error mid-file: what came before is all there is
        raise _Partial(_problem(error)) from None


def open_audio(path: str | os.PathLike, allow_partial: bool = False) -> AudioStream:
    """A lazily decoded stream of `path`; the file is checked (regular, non-empty) now."""
    path = Path(path)
    _check_file(path)
    return AudioStream(display_path(path), lambda: _wrap_errors(path, _file_blocks(path)), allow_partial)


def _wrap_errors(path: Path, blocks: Blocks) -> Blocks:
    try:
        yield from blocks
    except (AudioError, _Partial):
        raise
    except OSError as error:
        raise AudioError(path, f"cannot read it ({error.strerror or error})") from None


def array_stream(source: str, audio: object, sample_rate: int = SAMPLE_RATE) -> AudioStream:
    """An in-memory array as a stream (`array_samples`)."""
    samples = array_samples(source, audio, sample_rate)
    return AudioStream(source, lambda: iter((samples,)))


def array_samples(source: str, audio: object, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """An in-memory array as 16 kHz float32: integer PCM scaled, other rates resampled, nonsense refused."""
    return resample(as_float_samples(source, audio), sample_rate)


def as_float_samples(source: str, audio: object) -> np.ndarray:
    """1-D float32 samples in [-1, 1] from an API argument; one clear error for anything else."""
    if isinstance(audio, (bytes, bytearray, memoryview)):
        raise AudioError(source, "got bytes; pass a file path or a numpy array of samples")
    if not isinstance(audio, np.ndarray):
        raise AudioError(source, f"got {type(audio).__name__}; pass a file path or a numpy array of samples")
    if audio.dtype == np.bool_ or audio.dtype.kind not in "iuf":
        raise AudioError(source, f"samples of dtype {audio.dtype} are not audio (use float32 in [-1, 1] or int16)")
    if audio.ndim != 1:
        raise AudioError(source, f"expected mono samples (1-D), got shape {audio.shape}")
    if audio.dtype in _INT_SCALE:
        return (audio / _INT_SCALE[audio.dtype]).astype(np.float32)
    if audio.dtype == np.uint8:
        return ((audio.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if audio.dtype.kind in "iu":
        raise AudioError(source, f"samples of dtype {audio.dtype}: convert to float32 in [-1, 1] or int16")
    return np.ascontiguousarray(audio, dtype=np.float32)


# ---- resampling ----------------------------------------------------------------------------


def resample(audio: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (anti-aliased) to `target` Hz."""
    if rate == target:
        return audio
    from scipy.signal import resample_poly

    ratio = Fraction(target, rate).limit_denominator(1000)
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


def _resampled(blocks: Blocks, rate: int, target: int = SAMPLE_RATE) -> Blocks:
    """`resample` over a stream: each block with enough input context on both sides that its
    output samples equal those of `resample` on the whole signal."""
    if rate == target:
        yield from blocks
        return
    ratio = Fraction(target, rate).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    half_len = 10 * max(up, down)  # scipy's default filter half length
    context = half_len // up + 2  # input samples an output sample reaches on either side
    held, start, emitted = np.zeros(0, np.float32), 0, 0  # input held from global index `start`
    stopped: _Partial | None = None  # a decoder that stopped early: what it gave is still resampled

    def take() -> np.ndarray | None:
        nonlocal stopped
        try:
            return next(blocks, None)
        except _Partial as partial:
            stopped = partial
            return None

    pending = take()
    while pending is not None:
        following = take()
        held = np.concatenate([held, pending])
        end, final = start + len(held), following is None
        out = resample(held, rate, target)
        offset = start * up // down  # global index of out[0] (start is a multiple of down)
        stop = len(out) if final else max(0, ((end - context) * up - half_len) // down - offset)
        first = emitted - offset
        if stop > first:
            yield out[first:stop]
            emitted = offset + stop
        keep_from = max(start, ((emitted * down - half_len) // up - context) // down * down)
        held, start, pending = held[keep_from - start:], keep_from, following
    if stopped is not None:
        raise stopped


# ---- whole-file helpers (short clips) ------------------------------------------------------


def load_audio(path: str | Path, allow_partial: bool = False) -> np.ndarray:
    """Decode, downmix and resample to 16 kHz mono float32; reject empty, silent and non-finite audio."""
    return open_audio(path, allow_partial).read_all()


def probe_duration(path: str | Path) -> float | None:
    """Duration in seconds from the file header (cheap; for progress bars), or None when unknown.

    Only regular files are opened: probing a FIFO would block until a writer comes.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        import soundfile as sf

        info = sf.info(os.fsencode(path))
        return info.frames / info.samplerate if info.samplerate else None
    except Exception:  # unreadable here: load_audio reports why
        return None


def check_samples(path: str | Path, audio: np.ndarray) -> np.ndarray:
    """Reject arrays no transcription can use; returns contiguous float32 (integer PCM scaled)."""
    audio = as_float_samples(display_path(path), audio)
    finite = np.isfinite(audio).all()
    if not finite:
        raise AudioError(path, "contains NaN or infinite samples")
    _check_level(display_path(path), audio.size, float(np.abs(audio).max()) if audio.size else 0.0)
    return audio


def duration_s(audio: np.ndarray) -> float:
    return audio.shape[-1] / SAMPLE_RATE


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


__all__ = [
    "AUDIO_EXTENSIONS", "AudioError", "AudioStream", "SAMPLE_RATE", "array_samples", "array_stream",
    "as_float_samples", "check_samples", "display_path", "duration_s", "load_audio", "open_audio", "probe_duration",
    "resample", "wav_truncation",
]
