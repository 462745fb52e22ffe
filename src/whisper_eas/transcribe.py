"""File-level transcription API: `Transcriber(...).transcribe(path_or_array)`.

Long inputs are decoded with openai/whisper's sequential algorithm (`longform.py`): timestamped
segments, seeking by the last complete segment, conditioning on the previous text, temperature
fallback and, before it, the quality guard's dense re-run. `transcribe_many` batches windows
across files (`scheduler.py`); every file's result is the same as when it is transcribed alone.
`Transcriber(batched=BatchedOptions())` switches to batched long-form (`batched_longform.py`):
VAD chunks of one file decoded as independent windows, faster and usually a little less accurate.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

import numpy as np

from whisper_eas.audio import SAMPLE_RATE, array_samples, array_stream, check_samples, display_path, open_audio
from whisper_eas.batched_longform import BatchedOptions, batched_result, transcribe_batched
from whisper_eas.config import DEFAULT_PRUNE, PruneConfig
from whisper_eas.decoding import DecodingOptions
from whisper_eas.alignment import align_words, check_supported
from whisper_eas.errors import ConfigError
from whisper_eas.guard import GuardOptions
from whisper_eas.features import HOP_LENGTH
from whisper_eas.longform import LongformFile, LongformOptions
from whisper_eas.results import Segment, TranscriptionResult, WindowInfo
from whisper_eas.runners.base import Runner
from whisper_eas.runners.ort_align import has_align_graph
from whisper_eas.scheduler import Finished, run_lockstep
from whisper_eas.vad import hears_speech, model_path, vad_available
from whisper_eas.vad_gate import recording_windows, speech_stream
from whisper_eas.window_decode import decode_windows

AudioInput = str | Path | np.ndarray | BinaryIO  # a path, 16 kHz mono samples, or an open binary file
_DECODING = frozenset(f.name for f in fields(DecodingOptions))
_LONGFORM = frozenset(f.name for f in fields(LongformOptions))


def merge_settings(options: DecodingOptions, longform: LongformOptions,
                   settings: dict[str, Any]) -> tuple[DecodingOptions, LongformOptions]:
    """Keyword settings (faster-whisper style: `beam_size=5`, `word_timestamps=True`,
    `temperature=0.0` or a tuple) applied on top of the option objects; unknown names are an error."""
    settings = dict(settings)
    if "temperature" in settings:
        t = settings.pop("temperature")
        settings["temperatures"] = tuple(float(x) for x in t) if isinstance(t, (list, tuple)) else (float(t),)
    unknown = set(settings) - _DECODING - _LONGFORM
    if unknown:
        raise TypeError(f"unknown transcription setting(s): {', '.join(sorted(unknown))}")
    longform = replace(longform, **{k: v for k, v in settings.items() if k in _LONGFORM})
    options = replace(options, **{k: v for k, v in settings.items() if k in _DECODING and k not in _LONGFORM})
    return options, longform


@dataclass
class FileOutcome:
    """One input of `transcribe_many`: its result, or the error that stopped it."""

    index: int  # position in the inputs
    source: str
    result: TranscriptionResult | None
    error: Exception | None

    @property
    def ok(self) -> bool:
        return self.error is None


class Transcriber:
    """Transcribes audio files or arrays with one runner (model + backend + prune config)."""

    def __init__(
        self,
        runner: Runner,
        options: DecodingOptions | None = None,
        guard: GuardOptions | None = None,
        batch_size: int = 8,
        longform: LongformOptions | None = None,
        batched: BatchedOptions | None = None,
        allow_partial: bool = False,
    ):
        self.runner = runner
        # best_of=5: openai's CLI and faster-whisper sample 5 candidates per fallback temperature
        self.options = options or DecodingOptions(without_timestamps=False, best_of=5)
        self.options.check()
        _check_model_fits(runner, self.options)
        self.guard = guard or GuardOptions()
        self.longform = longform or LongformOptions()
        self.longform.check()
        if self.longform.word_timestamps:
            check_supported(runner)
        if batched is not None and self.longform.hallucination_silence_threshold is not None:
            raise ConfigError("hallucination_silence_threshold (--hallucination-silence-threshold) skips silence "
                              "between sequential windows: not in batched mode, whose VAD already leaves it out")
        if self.longform.multilingual and (batched is not None or not runner.tokenizer.multilingual):
            raise ConfigError("multilingual (a language per window) needs a multilingual model and the "
                              "sequential mode (not batched)")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.allow_partial = allow_partial  # transcribe what a truncated/corrupt file yields, with a warning
        self.batched = batched  # None: sequential, conditioned long-form (the default; batched_longform.py)
        if batched is not None:
            batched.check()
            model_path()  # the optional VAD: one clear error up front, not one per file
        self.backend_reason: str | None = None  # why `backend="auto"` picked this runner

    @classmethod
    def from_model(
        cls,
        model: str | Path = "tiny.en",
        prune: PruneConfig | None | Any = DEFAULT_PRUNE,
        backend: str = "auto",
        device: str = "cpu",
        engine_dir: str | Path | None = None,
        *,
        dense: bool = False,
        options: DecodingOptions | None = None,
        longform: LongformOptions | None = None,
        guard: GuardOptions | None = None,
        batch_size: int = 8,
        batched: BatchedOptions | None = None,
        allow_partial: bool = False,
        serve: bool = False,
        **settings: Any,
    ) -> "Transcriber":
        """Build the runner (`backend="auto"`, as the CLI: the best available) and decode with timestamps.

        With no `prune` the model's shipped config is used, as the CLI does (its batched-mode default
        with `batched`; beside `engine_dir`: the folder's); `dense=True` or `prune=None` asks for the
        dense model. `serve`: the runner takes the service's defaults (the table's serve row). `settings` are DecodingOptions / LongformOptions fields (`language`,
        `beam_size`, `word_timestamps`, ...) applied on top of `options` / `longform`, never dropped.
        """
        from whisper_eas.runners.factory import make_runner

        if dense:
            if prune is not DEFAULT_PRUNE and prune is not None:
                raise ConfigError("dense=True cannot be combined with a prune config")
            prune = None
        merged, longform = merge_settings(options or DecodingOptions(without_timestamps=False, best_of=5),
                                          longform or LongformOptions(), settings)
        runner = make_runner(backend, model, prune, device, engine_dir, batched=batched is not None, serve=serve)
        if longform.word_timestamps and backend == "auto" and engine_dir is None and has_align_graph(runner) is False:
            # a cached export from before word timestamps ran on ONNX Runtime has no alignment graph
            runner = make_runner("pytorch", model, prune, device, batched=batched is not None, serve=serve)
            runner.reason = "word timestamps: the cached ONNX export has no alignment graph"
        transcriber = cls(runner, options=merged, guard=guard, batch_size=batch_size, longform=longform,
                          batched=batched, allow_partial=allow_partial)
        transcriber.backend_reason = runner.reason
        return transcriber

    def with_settings(self, **settings: Any) -> "Transcriber":
        """A transcriber on the same runner with some settings changed (`beam_size=5`, ...)."""
        if not settings:
            return self
        options, longform = merge_settings(self.options, self.longform, settings)
        other = Transcriber(self.runner, options=options, guard=self.guard, batch_size=self.batch_size,
                            longform=longform, batched=self.batched, allow_partial=self.allow_partial)
        other.backend_reason = self.backend_reason
        return other

    def transcribe(self, audio: AudioInput, sample_rate: int = SAMPLE_RATE, **settings: Any) -> TranscriptionResult:
        """Transcribe one file, open binary file or mono array (`sample_rate`: the array's rate;
        int16 is scaled); raises `AudioError` for unusable audio. `settings`: as `with_settings`.
        An empty or all-zero array gives no segments (as faster-whisper), a file of either is an error."""
        if settings:
            return self.with_settings(**settings).transcribe(audio, sample_rate)
        outcome = next(self.transcribe_many([audio], sample_rate=sample_rate))
        if outcome.error is not None:
            raise outcome.error
        return outcome.result  # type: ignore[return-value]

    def stream(self, audio: AudioInput, sample_rate: int = SAMPLE_RATE, **settings: Any) -> "SegmentStream":
        """Segments as each window is decoded (like faster-whisper's generator); the whole result,
        the same as `transcribe` gives, is `stream.result` once the segments are consumed.
        The audio is opened (and checked) now; decoding happens as the stream is read."""
        if settings:
            return self.with_settings(**settings).stream(audio, sample_rate)
        started = time.perf_counter()
        return SegmentStream(self, self._open(audio, sample_rate), started)

    @property
    def supported_languages(self) -> list[str]:
        """The language codes the model knows (faster-whisper's `supported_languages`): ["en"] for
        English-only models."""
        tokenizer = self.runner.tokenizer
        return list(tokenizer.languages) if tokenizer.multilingual else ["en"]

    def detect_language(self, audio: AudioInput, sample_rate: int = SAMPLE_RATE) -> tuple[str, float, dict[str, float]]:
        """(language, its probability, every language's probability of the first 30 s), computed as
        `transcribe` detects it: the first window on the runner's encoding (dense where that is
        unsure), more windows where the first stays unsure (`LongformOptions.language_detection_*`).
        English-only models: ("en", 1.0, {"en": 1.0})."""
        from whisper_eas.window_decode import first_window_language

        if not self.runner.tokenizer.multilingual:
            return "en", 1.0, {"en": 1.0}
        return first_window_language(self.runner, self._open(audio, sample_rate).next_window(), self.guard,
                                     self.longform)

    def transcribe_many(self, inputs: Iterable[AudioInput], sample_rate: int = SAMPLE_RATE,
                        progress: Callable[[float], None] | None = None) -> Iterator[FileOutcome]:
        """Transcribe inputs with windows batched across files; yields each as it finishes.

        `progress(seconds)`, after every decoded round: audio seconds done in files still open.
        """
        if self.batched is not None:
            yield from (self._batched(index, audio, sample_rate) for index, audio in enumerate(inputs))
            return
        sources: dict[int, str] = {}

        def jobs():
            for index, audio in enumerate(inputs):
                sources[index] = _source(audio)
                yield index, partial(opened, index, audio)

        live: dict[int, LongformFile] = {}

        def opened(index: int, audio: AudioInput) -> LongformFile:
            live[index] = state = self._open(audio, sample_rate)
            return state

        def decode(requests):
            outcomes = decode_windows(self.runner, requests, options=self.options, longform=self.longform,
                                      guard=self.guard)
            if progress is not None:
                progress(sum(min(s.seek, s.content_frames) for s in live.values()) * HOP_LENGTH / SAMPLE_RATE)
            return outcomes

        for finished in run_lockstep(jobs(), decode, self.batch_size):
            live.pop(finished.key, None)
            yield self._outcome(finished, sources.pop(finished.key))

    def open(self, audio: AudioInput, sample_rate: int = SAMPLE_RATE) -> LongformFile:
        """Check and open one input for window-by-window decoding (what `transcribe_many` does per
        file); raises `AudioError` for unusable audio. For callers that schedule windows themselves
        (the service): decode `next_window()` with `decode_windows` and `accept` the outcome."""
        return self._open(audio, sample_rate)

    def result(self, state: LongformFile, wall_s: float) -> TranscriptionResult:
        """The result of a file opened with `open` once `state.done`."""
        return self._result(state, wall_s)

    def _batched(self, index: int, audio: AudioInput, sample_rate: int = SAMPLE_RATE) -> FileOutcome:
        """One file in batched mode: its VAD chunks decoded `batch_size` windows at a time. A path is
        streamed (read twice, never held whole); an array (at `sample_rate`) or an open binary file
        is decoded, resampled to 16 kHz where needed, checked and transcribed from memory, as the
        sequential mode takes them."""
        source, started = _source(audio), time.perf_counter()
        stream = None
        try:
            samples = None
            if isinstance(audio, (str, os.PathLike)):
                stream = open_audio(audio, self.allow_partial)
            else:
                if _is_file_like(audio):
                    audio, sample_rate = _read_file_like(audio)
                samples = check_samples(source, array_samples(source, audio, sample_rate))
            part = transcribe_batched(self.runner, stream if stream is not None else samples,
                                      replace(self.options, language=self._fixed_language()),
                                      self.longform, self.guard, self.batch_size, self.batched)
        except Exception as error:  # one bad input never stops the batch
            return FileOutcome(index, source, None, _name_file(error, source))
        result = batched_result(self.runner, source, part, time.perf_counter() - started, self.batch_size)
        result.warnings = list(stream.warnings) if stream is not None else []
        if self._fixed_language() is not None:
            result.language_prob = 1.0
        return FileOutcome(index, source, result, None)

    def _open(self, audio: AudioInput, sample_rate: int = SAMPLE_RATE) -> LongformFile:
        started = time.perf_counter()
        checked = True
        if isinstance(audio, (str, os.PathLike)):
            stream = open_audio(audio, self.allow_partial)
        else:
            if _is_file_like(audio):
                audio, sample_rate = _read_file_like(audio)
            stream = array_stream(_source(audio), audio, sample_rate)
            samples = next(stream.blocks(False), np.zeros(0, np.float32))
            checked = bool(samples.size) and bool(np.any(samples))  # empty / all-zero arrays: decoded as they are
        speech_map = None
        if self.longform.vad_filter and self.batched is None and vad_available():
            stream, speech_map = speech_stream(stream, checked)
            checked = False
        state = LongformFile.from_stream(
            stream, self.runner.n_mels, self.runner.tokenizer, self.longform,
            language=self._fixed_language(), initial_prompt=tuple(self.options.prompt or ()), check=checked,
        )
        state.speech_map = speech_map
        if self.longform.vad_check and vad_available():
            state.speech_check = hears_speech
        if self.longform.word_timestamps:
            state.align = partial(align_words, self.runner, language=self._fixed_language(), task=self.options.task)
        state.load_s = time.perf_counter() - started  # audio decoding included
        return state

    def _fixed_language(self) -> str | None:
        if self.options.language is not None:
            return self.options.language
        return None if self.runner.tokenizer.multilingual else "en"

    def _outcome(self, finished: Finished, source: str) -> FileOutcome:
        if finished.error is not None or finished.state is None:
            error = finished.error or RuntimeError(f"{source}: no result")
            return FileOutcome(int(finished.key), source, None, _name_file(error, source))
        return FileOutcome(int(finished.key), source, self._result(finished.state, finished.wall_s), None)

    def _result(self, state: LongformFile, wall_s: float) -> TranscriptionResult:
        info = self.runner.describe()
        timing = {"wall_s": round(wall_s, 4), "load_s": round(state.load_s, 4),
                  "windows": len(state.windows), "batch_size": self.batch_size}
        windows = state.windows if state.speech_map is None else recording_windows(state.windows, state.speech_map)
        return TranscriptionResult(
            source=state.source, text=state.text, segments=state.segments, language=state.language,
            language_prob=1.0 if self._fixed_language() is not None else state.language_prob,
            duration_s=state.duration_s if state.speech_map is None else state.speech_map.duration_s,
            model=info["model"], backend=info["backend"], device=info["device"],
            prune=info["prune"], windows=windows, timing=timing, warnings=list(state.warnings),
            options=self.settings(),
        )

    def settings(self) -> dict:
        """Every setting this transcriber decodes with (echoed in the JSON output)."""
        decoding = {k: v for k, v in asdict(self.options).items() if k not in ("prompt", "prefix") or v}
        return {"decoding": decoding, "longform": asdict(self.longform), "guard": asdict(self.guard),
                "batch_size": self.batch_size}


class SegmentStream:
    """Iterate for segments as windows are decoded; `result` (all segments, timing, options) after."""

    def __init__(self, transcriber: Transcriber, state: LongformFile, started: float):
        self._transcriber, self._state, self._started = transcriber, state, started
        self._result: TranscriptionResult | None = None
        self._segments = self._decode()  # one generator: a second `iter()` continues, never skips

    def __iter__(self) -> Iterator[Segment]:
        return self

    def __next__(self) -> Segment:
        return next(self._segments)

    def _decode(self) -> Iterator[Segment]:
        t, state = self._transcriber, self._state
        while not state.done:
            first_new = len(state.segments)
            try:
                state.accept(decode_windows(t.runner, [state.next_window()], options=t.options,
                                            longform=t.longform, guard=t.guard)[0])
            except Exception as error:
                raise _name_file(error, state.source) from error
            yield from state.segments[first_new:]
        if self._result is None:
            self._result = t._result(state, time.perf_counter() - self._started)

    @property
    def language(self) -> str | None:
        return self._state.language

    @property
    def result(self) -> TranscriptionResult:
        """The whole transcription (decodes whatever has not been read yet)."""
        if self._result is None:
            for _ in self:
                pass
        return self._result  # type: ignore[return-value]


def _check_model_fits(runner: Runner, options: DecodingOptions) -> None:
    """English-only models have no language or task tokens: asking for others would be ignored silently."""
    if runner.tokenizer.multilingual:
        return
    if options.language not in (None, "en"):
        raise ConfigError(f"{runner.model_name} is English-only; language {options.language!r} "
                          "needs a multilingual model")
    if options.task != "transcribe":
        raise ConfigError(f"{runner.model_name} is English-only and cannot {options.task}; use a multilingual model")


def _source(audio: AudioInput) -> str:
    if isinstance(audio, (str, os.PathLike)):
        return display_path(audio)
    if _is_file_like(audio):
        name = getattr(audio, "name", None)
        return display_path(name) if isinstance(name, (str, os.PathLike)) else f"<{type(audio).__name__}>"
    return "<array>"


def _is_file_like(audio: object) -> bool:
    return callable(getattr(audio, "read", None)) and not isinstance(audio, np.ndarray)


def _read_file_like(audio: BinaryIO) -> tuple[np.ndarray, int]:
    """An open binary file or BytesIO, decoded by soundfile (wav, flac, ogg, mp3): (mono samples, rate)."""
    import soundfile as sf

    from whisper_eas.audio import AudioError

    source = _source(audio)
    try:
        data = audio.read()
        if isinstance(data, str):
            raise AudioError(source, "opened in text mode; open it with 'rb'")
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as error:  # soundfile raises several types for data it cannot read
        raise AudioError(source, f"unreadable audio ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
    return samples.mean(axis=1).astype(np.float32), int(rate)


def _name_file(error: Exception, source: str) -> Exception:
    """Errors from inside decoding get the file's name in front, as `AudioError`s already have."""
    if source in str(error):
        return error
    wrapped = RuntimeError(f"{source}: transcription failed ({type(error).__name__}: {error})")
    wrapped.__cause__ = error
    return wrapped


__all__ = ["FileOutcome", "Segment", "SegmentStream", "Transcriber", "TranscriptionResult", "WindowInfo", "merge_settings"]
