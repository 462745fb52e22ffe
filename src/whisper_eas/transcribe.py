"""File-level transcription API: `Transcriber(...).transcribe(path_or_array)`.

Long inputs are decoded with openai/whisper's sequential algorithm (`longform.py`): timestamped
segments, seeking by the last complete segment, conditioning on the previous text, temperature
fallback and, before it, the quality guard's dense re-run. `transcribe_many` batches windows
across files (`scheduler.py`); every file's result is the same as when it is transcribed alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from whisper_eas.audio import check_samples, load_audio
from whisper_eas.batched_longform import BatchedOptions, batched_result, transcribe_batched
from whisper_eas.config import PruneConfig
from whisper_eas.decoding import DecodingOptions
from whisper_eas.guard import GuardOptions
from whisper_eas.longform import LongformFile, LongformOptions
from whisper_eas.results import Segment, TranscriptionResult, WindowInfo
from whisper_eas.runners.base import Runner
from whisper_eas.scheduler import Finished, run_lockstep
from whisper_eas.vad import model_path
from whisper_eas.window_decode import decode_windows

AudioInput = str | Path | np.ndarray


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
    ):
        self.runner = runner
        self.options = options or DecodingOptions(without_timestamps=False)
        self.options.check()
        _check_model_fits(runner, self.options)
        self.guard = guard or GuardOptions()
        self.longform = longform or LongformOptions()
        self.longform.check()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.batched = batched  # None: sequential, conditioned long-form (the default; batched_longform.py)
        if batched is not None:
            batched.check()
            model_path()  # the optional VAD: one clear error up front, not one per file
        self.backend_reason: str | None = None  # why `backend="auto"` picked this runner

    @classmethod
    def from_model(
        cls,
        model: str | Path = "tiny.en",
        prune: PruneConfig | None = None,
        backend: str = "pytorch",
        device: str = "cpu",
        engine_dir: str | Path | None = None,
        *,
        language: str | None = None,
        task: str = "transcribe",
        beam_size: int | None = None,
        **kwargs,
    ) -> "Transcriber":
        """Build the runner (`backend="auto"`: best available) and decode with timestamps."""
        from whisper_eas.runners.factory import make_runner

        runner = make_runner(backend, model, prune, device, engine_dir)
        options = kwargs.pop("options", None) or DecodingOptions(
            task=task, language=language, beam_size=beam_size, without_timestamps=False
        )
        transcriber = cls(runner, options=options, **kwargs)
        transcriber.backend_reason = runner.reason
        return transcriber

    def transcribe(self, audio: AudioInput) -> TranscriptionResult:
        """Transcribe one file or 16 kHz mono array; raises `AudioError` for unusable audio."""
        outcome = next(self.transcribe_many([audio]))
        if outcome.error is not None:
            raise outcome.error
        return outcome.result  # type: ignore[return-value]

    def transcribe_many(self, inputs: Iterable[AudioInput]) -> Iterator[FileOutcome]:
        """Transcribe inputs with windows batched across files; yields each as it finishes."""
        if self.batched is not None:
            yield from (self._batched(index, audio) for index, audio in enumerate(inputs))
            return
        sources: dict[int, str] = {}

        def jobs():
            for index, audio in enumerate(inputs):
                sources[index] = _source(audio)
                yield index, partial(self._open, audio)

        decode = partial(decode_windows, self.runner, options=self.options, longform=self.longform, guard=self.guard)
        for finished in run_lockstep(jobs(), decode, self.batch_size):
            yield self._outcome(finished, sources.pop(finished.key))

    def _batched(self, index: int, audio: AudioInput) -> FileOutcome:
        """One file in batched mode: its VAD chunks decoded `batch_size` windows at a time."""
        source, started = _source(audio), time.perf_counter()
        try:
            samples = load_audio(audio) if isinstance(audio, (str, Path)) else check_samples(source, audio)
            load_s = time.perf_counter() - started
            part = transcribe_batched(self.runner, samples, replace(self.options, language=self._fixed_language()),
                                      self.longform, self.guard, self.batch_size, self.batched)
        except Exception as error:  # one bad input never stops the batch
            return FileOutcome(index, source, None, _name_file(error, source))
        result = batched_result(self.runner, source, samples, part, time.perf_counter() - started, load_s,
                                self.batch_size)
        return FileOutcome(index, source, result, None)

    def _open(self, audio: AudioInput) -> LongformFile:
        source = _source(audio)
        started = time.perf_counter()
        samples = load_audio(audio) if isinstance(audio, (str, Path)) else check_samples(source, audio)
        state = LongformFile.from_samples(
            source, samples, self.runner.n_mels, self.runner.tokenizer, self.longform,
            language=self._fixed_language(), initial_prompt=tuple(self.options.prompt or ()),
        )
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
        return TranscriptionResult(
            source=state.source, text=state.text, segments=state.segments, language=state.language,
            language_prob=state.language_prob,
            duration_s=state.duration_s, model=info["model"], backend=info["backend"], device=info["device"],
            prune=info["prune"], windows=state.windows, timing=timing,
        )


def _check_model_fits(runner: Runner, options: DecodingOptions) -> None:
    """English-only models have no language or task tokens: asking for others would be ignored silently."""
    if runner.tokenizer.multilingual:
        return
    if options.language not in (None, "en"):
        raise ValueError(f"{runner.model_name} is English-only; language {options.language!r} "
                         "needs a multilingual model")
    if options.task != "transcribe":
        raise ValueError(f"{runner.model_name} is English-only and cannot {options.task}; use a multilingual model")


def _source(audio: AudioInput) -> str:
    return "<array>" if isinstance(audio, np.ndarray) else str(audio)


def _name_file(error: Exception, source: str) -> Exception:
    """Errors from inside decoding get the file's name in front, as `AudioError`s already have."""
    if source in str(error):
        return error
    wrapped = RuntimeError(f"{source}: transcription failed ({type(error).__name__}: {error})")
    wrapped.__cause__ = error
    return wrapped


__all__ = ["FileOutcome", "Segment", "Transcriber", "TranscriptionResult", "WindowInfo"]
