"""Speech regions by Silero VAD (ONNX), for batched long-form transcription.

The model is Silero VAD v6 (MIT, snakers4/silero-vad) in the sequence form that takes the whole
file at once: rows of 512 samples with the previous row's last 64 samples in front, one
probability per 32 ms (its per-row convolutions on the cores in parallel, then its LSTM). It
comes from a PyPI package, never from the network: the `silero-vad` package's
`silero_vad_16k_sequence.onnx` (its only hard dependencies, torch and packaging, are ours
already; `pip install 'whisper-eas[vad]'`), or faster-whisper's copy of the same graph when that
package is installed instead. The rule that turns probabilities into speech
spans is silero-vad's `get_speech_timestamps` as faster-whisper adapted it, with faster-whisper's
batched-pipeline settings as defaults, so both cut a recording into the same chunks.
"""

from __future__ import annotations

import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np

from whisper_eas.audio import SAMPLE_RATE
from whisper_eas.errors import ConfigError, MissingDependencyError

WINDOW = 512  # samples per VAD probability (32 ms)
CONTEXT = 64  # samples of the previous row the model sees in front of each row
VAD_MISSING = ("batched transcription needs Silero VAD's ONNX model and ONNX Runtime: "
               "pip install 'whisper-eas[vad]' (silero-vad and onnxruntime)")


class VadUnavailable(MissingDependencyError):
    """The optional VAD dependencies are not installed."""


@dataclass(frozen=True)
class VadOptions:
    """When a stretch of audio counts as speech (faster-whisper's batched defaults)."""

    threshold: float = 0.5  # probability at or above which a 32 ms window is speech
    neg_threshold: float | None = None  # below it speech ends (default: threshold - 0.15)
    min_speech_ms: int = 0  # shorter spans are dropped
    max_speech_s: float = 30.0  # longer spans are split, at a silence if there is one
    min_silence_ms: int = 160  # silence shorter than this does not end a span
    speech_pad_ms: int = 400  # each span grows by this much on both sides

    def check(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"VAD threshold must be in (0, 1), got {self.threshold}")
        if self.neg_threshold is not None and not 0.0 < self.neg_threshold <= self.threshold:
            raise ConfigError(f"VAD neg_threshold must be in (0, threshold], got {self.neg_threshold}")
        if self.max_speech_s <= 2 * self.speech_pad_ms / 1000 + WINDOW / SAMPLE_RATE:
            raise ConfigError(f"VAD max_speech_s {self.max_speech_s} leaves no room inside its padding")
        if min(self.min_speech_ms, self.min_silence_ms, self.speech_pad_ms) < 0:
            raise ConfigError("VAD durations must be >= 0")


@dataclass(frozen=True)
class SpeechSpan:
    """Speech from sample `start` to sample `end` (exclusive) of the original audio."""

    start: int
    end: int

    @property
    def samples(self) -> int:
        return self.end - self.start


def model_path() -> Path:
    """The Silero VAD ONNX file shipped by an installed package; `VadUnavailable` if none is."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise VadUnavailable(VAD_MISSING)
    candidates = [("silero_vad", "data/silero_vad_16k_sequence.onnx"), ("faster_whisper", "assets/silero_vad_v6.onnx")]
    for package, relative in candidates:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(list(spec.submodule_search_locations)[0]) / relative
        if path.is_file():
            return path
    raise VadUnavailable(VAD_MISSING)


class SileroVad:
    """Speech probability per 32 ms window of a 16 kHz file.

    The graph is convolutions per 32 ms row, then an LSTM over the rows. The convolutions are ~80%
    of its time and independent per row, but ONNX Runtime's second thread does not speed them up.
    So the graph is cut before the LSTM: the convolutions run on parts of the rows in parallel, one
    thread each, and the LSTM runs once over all of them. The probabilities are bit for bit those of
    the whole graph (tests/test_batched.py), 1.5x faster on two cores. A graph without that shape
    runs whole.
    """

    MIN_ROWS_PER_PART = 256  # 8 s of audio: below that a part costs more than it saves
    # 20 s of audio per run over a stream or an array: the same values as one run (the LSTM's state
    # and each window's context carried across), memory flat in the file's length and small (ONNX
    # Runtime's arena keeps the largest run's buffers: 5 min runs held 200 MB more for a 217 s file),
    # and no slower than longer runs
    STREAM_ROWS = 625

    def __init__(self, path: str | Path | None = None, parts: int | None = None):
        self.path = Path(path) if path is not None else model_path()
        self.parts = max(1, min(parts if parts is not None else (os.cpu_count() or 1), 4))
        self.session = _vad_session(str(self.path))  # the whole graph
        self._split = _split_graph(self.path) if self.parts > 1 else None
        self._pool: ThreadPoolExecutor | None = None

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """[len // 512 + 1] speech probabilities; the last window is zero-padded (as faster-whisper pads)."""
        return self.stream_probabilities(iter((np.asarray(audio, dtype=np.float32),)))[0]

    def stream_probabilities(self, blocks: Iterable[np.ndarray]) -> tuple[np.ndarray, int]:
        """(probabilities, samples read) of a stream of 16 kHz blocks, `STREAM_ROWS` windows at a time
        with the LSTM's state and each window's context carried across: the values of one run over
        the whole file (tests/test_vad_gate.py), in memory that does not grow with its length."""
        step = self.STREAM_ROWS * WINDOW
        pending, n_pending, count, out = [], 0, 0, []
        state = (np.zeros((1, 1, 128), dtype=np.float32),) * 2
        context = np.zeros(CONTEXT, np.float32)
        for block in blocks:
            count += len(block)
            pending.append(np.asarray(block, np.float32))
            n_pending += len(block)
            if n_pending >= step:
                held = np.concatenate(pending)
                full = len(held) // step * step
                for start in range(0, full, step):
                    probs, state, context = self._rows(held[start : start + step].reshape(-1, WINDOW), state, context)
                    out.append(probs)
                pending, n_pending = [held[full:]], len(held) - full
        held = np.concatenate(pending) if pending else np.zeros(0, np.float32)
        rows = np.pad(held, (0, WINDOW - len(held) % WINDOW)).reshape(-1, WINDOW)
        out.append(self._rows(rows, state, context)[0])
        return np.concatenate(out), count

    def _rows(self, rows: np.ndarray, state: tuple[np.ndarray, np.ndarray],
              context: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], np.ndarray]:
        """Probabilities of `rows` [N, 512] after `state` and the previous row's last samples."""
        before = np.concatenate([context[None], rows[:-1, -CONTEXT:]], axis=0)
        feed_rows = np.concatenate([before, rows], axis=1)
        h, c = state
        parts = min(self.parts, len(feed_rows) // self.MIN_ROWS_PER_PART)
        if self._split is None or parts < 2:
            probs, h, c = self.session.run(None, {"input": feed_rows, "h": h, "c": c})
        else:
            front, back, features = self._split
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.parts, thread_name_prefix="vad")
            pieces = self._pool.map(lambda part: front.run(None, {"input": part})[0],
                                    np.array_split(feed_rows, parts))
            probs, h, c = back.run(None, {features: np.concatenate(list(pieces), axis=0), "h": h, "c": c})
        return probs.reshape(-1), (h, c), rows[-1, -CONTEXT:].copy()


def _vad_session(model: str | bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.inter_op_num_threads = options.intra_op_num_threads = 1  # a small model: threads only wait
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _split_graph(path: Path):
    """(per-row front session, LSTM back session, the tensor between them), or None when the graph
    is not input -> convolutions -> Transpose -> LSTM -> ... (then it runs whole).

    The two parts are cut once and kept in the model cache (`vad/<digest>/`): cutting imports the
    `onnx` package, 0.7 s of every short process's start, which the cached parts skip."""
    folder = _split_folder(path)
    if folder is not None and (folder / "features.txt").is_file():
        features = (folder / "features.txt").read_text().strip()
        return _vad_session(str(folder / "front.onnx")), _vad_session(str(folder / "back.onnx")), features
    parts = _cut_graph(path)
    if parts is None:
        return None
    front, back, features = parts
    if folder is not None:
        _keep_parts(folder, front, back, features)
    return _vad_session(front), _vad_session(back), features


def _split_folder(path: Path) -> Path | None:
    import hashlib

    from whisper_eas.checkpoints.registry import cache_home

    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None
    return cache_home() / "vad" / digest


def _keep_parts(folder: Path, front: bytes, back: bytes, features: str) -> None:
    """Write the parts into `folder` (atomically: a private folder renamed into place); a cache that
    cannot be written only costs the next process the cut."""
    import shutil
    import tempfile

    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        (private / "front.onnx").write_bytes(front)
        (private / "back.onnx").write_bytes(back)
        (private / "features.txt").write_text(features + "\n")  # written last: its presence means complete
        try:
            private.rename(folder)
        except OSError:  # another process kept its copy first
            shutil.rmtree(private, ignore_errors=True)
    except OSError:
        pass


def _cut_graph(path: Path) -> tuple[bytes, bytes, str] | None:
    import onnx
    from onnx.utils import Extractor

    try:
        model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
        nodes = {out: node for node in model.graph.node for out in node.output}
        lstm = next(node for node in model.graph.node if node.op_type == "LSTM")
        transpose = nodes.get(lstm.input[0])
        if transpose is None or transpose.op_type != "Transpose":
            return None
        features = transpose.input[0]
        outputs = [o.name for o in model.graph.output]
        extractor = Extractor(model)
        front = extractor.extract_model(["input"], [features])
        back = extractor.extract_model([features, "h", "c"], outputs)
    except (StopIteration, ValueError, KeyError, onnx.checker.ValidationError):
        return None
    return front.SerializeToString(), back.SerializeToString(), features


@lru_cache(maxsize=1)
def vad_available() -> bool:
    """Whether Silero VAD can run here (the optional `vad` extra is installed); looked up once per
    process, as every file opened asks."""
    try:
        model_path()
    except VadUnavailable:
        return False
    return True


def hears_speech(audio: np.ndarray, options: VadOptions | None = None) -> bool:
    """Whether any stretch of 16 kHz `audio` is speech by the batched mode's rule: the sequential
    mode's second opinion on a window the model calls no-speech (`LongformFile.speech_check`)."""
    return bool(speech_spans(audio, options))


@lru_cache(maxsize=1)
def default_vad() -> SileroVad:
    """One VAD session per process (loading it costs more than running it on a minute of audio)."""
    return SileroVad()


def speech_spans(audio: np.ndarray, options: VadOptions | None = None,
                 vad: SileroVad | None = None) -> list[SpeechSpan]:
    """Speech regions of 16 kHz `audio`, in time order, padded and non-overlapping."""
    options = options or VadOptions()
    options.check()
    return spans_of((vad or default_vad()).probabilities(audio), len(audio), options)


def spans_of(probs: np.ndarray, n_samples: int, options: VadOptions) -> list[SpeechSpan]:
    """Speech regions of a file of `n_samples` from its VAD probabilities (`speech_spans`)."""
    raw = _threshold_spans(probs, n_samples, options)
    return _pad_spans(raw, n_samples, int(SAMPLE_RATE * options.speech_pad_ms / 1000))


class _Tracker:
    """The state of silero-vad's hysteresis loop (sample positions)."""

    def __init__(self) -> None:
        self.triggered = False
        self.start = 0
        self.temp_end = 0  # where the current silence began (0: none)
        self.prev_end = 0  # a silence long enough to split at, if the span grows too long
        self.next_start = 0  # where speech resumed after that silence


def _threshold_spans(probs: np.ndarray, n_samples: int, o: VadOptions) -> list[list[int]]:
    """silero-vad's hysteresis: start at `threshold`, end after `min_silence_ms` below `neg_threshold`."""
    neg = o.neg_threshold if o.neg_threshold is not None else max(o.threshold - 0.15, 0.01)
    pad = SAMPLE_RATE * o.speech_pad_ms / 1000
    max_speech = SAMPLE_RATE * o.max_speech_s - WINDOW - 2 * pad
    min_silence, split_silence = SAMPLE_RATE * o.min_silence_ms / 1000, SAMPLE_RATE * 98 / 1000
    min_speech = SAMPLE_RATE * o.min_speech_ms / 1000
    spans: list[list[int]] = []
    s = _Tracker()
    for i, p in enumerate(probs.tolist()):
        at = WINDOW * i
        if p >= o.threshold and s.temp_end:
            s.temp_end = 0
            if s.next_start < s.prev_end:
                s.next_start = at
        if p >= o.threshold and not s.triggered:
            s.triggered, s.start = True, at
            continue
        if s.triggered and at - s.start > max_speech:
            _split_long(s, spans, at)
            if not s.triggered:
                continue
        if p < neg and s.triggered:
            s.temp_end = s.temp_end or at
            if at - s.temp_end > split_silence:
                s.prev_end = s.temp_end
            if at - s.temp_end < min_silence:
                continue
            if s.temp_end - s.start > min_speech:
                spans.append([s.start, s.temp_end])
            s.triggered, s.prev_end, s.next_start, s.temp_end = False, 0, 0, 0
    if s.triggered and n_samples - s.start > min_speech:
        spans.append([s.start, n_samples])
    return spans


def _split_long(s: _Tracker, spans: list[list[int]], at: int) -> None:
    """A span reached `max_speech_s`: end it at the last long-enough silence, else right here."""
    if s.prev_end:
        spans.append([s.start, s.prev_end])
        if s.next_start < s.prev_end:  # still in that silence: wait for speech to resume
            s.triggered = False
        else:
            s.start = s.next_start
    else:
        spans.append([s.start, at])
        s.triggered = False
    s.prev_end = s.next_start = s.temp_end = 0


def _pad_spans(spans: list[list[int]], n_samples: int, pad: int) -> list[SpeechSpan]:
    """Grow spans by `pad` each side; a gap shorter than two pads is split between its neighbours."""
    for i, span in enumerate(spans):
        if i == 0:
            span[0] = max(0, span[0] - pad)
        if i == len(spans) - 1:
            span[1] = min(n_samples, span[1] + pad)
            continue
        gap = spans[i + 1][0] - span[1]
        if gap < 2 * pad:
            span[1] += gap // 2
            spans[i + 1][0] = max(0, spans[i + 1][0] - gap // 2)
        else:
            span[1] = min(n_samples, span[1] + pad)
            spans[i + 1][0] = max(0, spans[i + 1][0] - pad)
    return [SpeechSpan(int(a), int(b)) for a, b in spans]
