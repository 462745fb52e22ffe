"""WER of a Transcriber over a manifest: the text users get, files of any length.

Each utterance is transcribed exactly as `trt-transcribe` would (timestamps, temperature
fallback, quality guard, long-form windows for audio over 30 s, batched across files), then
scored against its reference. Per-utterance word errors and reference words are kept so paired
statistics between two reports can be computed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from whisper_eas.audio import AudioError, load_audio
from whisper_eas.config import PruneConfig, format_prune
from whisper_eas.errors import WhisperEasError
from whisper_eas.evaluation.manifest import Utterance
from whisper_eas.evaluation.wer import word_errors
from whisper_eas.features import N_SAMPLES, window_features
from whisper_eas.results import TranscriptionResult
from whisper_eas.transcribe import Transcriber

EMPTY_REFERENCE = "empty reference"


class EvalError(WhisperEasError, ValueError):
    """An evaluation that scored nothing (no utterance transcribed, or no reference words)."""


@dataclass
class UtteranceScore:
    id: str
    ref: str
    hyp: str | None
    wer: float | None  # percent; None when the file failed or its reference is empty
    n_words: int  # reference words after normalization
    error: str | None = None
    kept_frames: int | None = None  # mean over the file's decoded windows
    fallback: str | None = None  # the first guard reason among its windows, if any
    errors: int | None = None  # word errors (substitutions + deletions + insertions)
    note: str | None = None  # EMPTY_REFERENCE: scored as insertions only, no per-utterance WER
    duration_s: float | None = None
    windows: int = 0  # 30 s windows decoded (long-form: more than one)
    fallbacks: int = 0  # windows the guard re-ran dense
    language: str | None = None
    language_prob: float | None = None  # where the language was detected


@dataclass
class EvalReport:
    model: str
    config: dict | None
    backend: str
    device: str
    wer: float | None  # None when there were no reference words
    n_utterances: int  # transcribed (failed ones are not counted)
    n_words: int
    n_failed: int
    wall_s: float
    sparsity: float  # mean share of encoder frames dropped, over decoded windows
    fallbacks: int  # windows the guard re-ran dense
    n_errors: int = 0
    n_windows: int = 0
    n_empty_references: int = 0
    mode: str = "sequential"  # or "batched" (`trt-transcribe --batched`: VAD chunks, no previous text)
    utterances: list[UtteranceScore] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        cfg = format_prune(None if self.config is None else PruneConfig.from_dict(self.config))  # the one grammar
        wer = "WER n/a" if self.wer is None else f"WER {self.wer:.2f}%"
        empty = f", {self.n_empty_references} empty reference(s)" if self.n_empty_references else ""
        mode = " batched" if self.mode == "batched" else ""
        return (
            f"{self.model} [{cfg}]{mode} {wer} on {self.n_utterances} utterances ({self.n_words} words, "
            f"{self.n_windows} windows{empty}), sparsity {100 * self.sparsity:.0f}%, {self.fallbacks} guard re-runs, "
            f"{self.n_failed} failed, {self.wall_s:.1f}s"
        )


def load_window(utt: Utterance, n_mels: int) -> torch.Tensor:
    """One utterance as a padded 30 s window (the search's single-window grid); longer audio is an
    error there, since cutting it would score a transcript against text it does not cover."""
    audio = load_audio(utt.path)
    if audio.shape[0] > N_SAMPLES:
        raise AudioError(utt.path, f"{audio.shape[0] / 16000:.1f}s is longer than one 30 s window "
                                   "(the search scores single windows; `whisper-eas eval` takes any length)")
    return torch.from_numpy(window_features(audio, n_mels))


def score(utt: Utterance, result: TranscriptionResult) -> UtteranceScore:
    """One transcribed utterance against its reference."""
    errors, n_words = word_errors(utt.text, result.text)
    decoded = [w for w in result.windows if not w.skipped] or result.windows
    kept = round(sum(w.kept_frames for w in decoded) / len(decoded)) if decoded else None
    reasons = [w.fallback for w in result.windows if w.fallback]
    return UtteranceScore(
        utt.id, utt.text, result.text, 100.0 * errors / n_words if n_words else None, n_words,
        kept_frames=kept, fallback=reasons[0] if reasons else None, errors=errors,
        note=None if n_words else EMPTY_REFERENCE, duration_s=round(result.duration_s, 3),
        windows=len(result.windows), fallbacks=len(reasons), language=result.language,
        language_prob=result.language_prob,
    )


def evaluate(
    transcriber: Transcriber,
    utterances: list[Utterance],
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Transcribe every utterance with `transcriber` and score WER; a failed file is reported, not fatal.
    Raises `EvalError` when there is nothing to evaluate."""
    if not utterances:
        raise EvalError("the manifest lists no utterances: nothing to evaluate")
    start = time.perf_counter()
    scores: dict[int, UtteranceScore] = {}
    sparsities: list[float] = []
    for done, outcome in enumerate(transcriber.transcribe_many([u.path for u in utterances]), start=1):
        utt = utterances[outcome.index]
        if outcome.error is not None or outcome.result is None:
            scores[outcome.index] = UtteranceScore(utt.id, utt.text, None, None, 0, str(outcome.error))
        else:
            scores[outcome.index] = score(utt, outcome.result)
            sparsities += [1 - w.kept_frames / w.n_frames for w in outcome.result.windows if not w.skipped]
        if progress:
            progress(done, len(utterances))
    ordered = [scores[i] for i in range(len(utterances))]
    ok = [s for s in ordered if s.error is None]
    n_errors, n_words = sum(s.errors or 0 for s in ok), sum(s.n_words for s in ok)
    info = transcriber.runner.describe()
    return EvalReport(
        model=info["model"], config=info["prune"], backend=info["backend"], device=info["device"],
        wer=100.0 * n_errors / n_words if n_words else None,
        n_utterances=len(ok), n_words=n_words, n_failed=len(ordered) - len(ok),
        wall_s=time.perf_counter() - start,
        sparsity=sum(sparsities) / len(sparsities) if sparsities else 0.0,
        fallbacks=sum(s.fallbacks for s in ok), n_errors=n_errors, n_windows=sum(s.windows for s in ok),
        n_empty_references=sum(1 for s in ok if s.note == EMPTY_REFERENCE),
        mode="sequential" if transcriber.batched is None else "batched", utterances=ordered,
    )


def check_scored(report: EvalReport) -> None:
    """Raise `EvalError` when the report scored nothing: every file failed, or no reference words."""
    if report.n_utterances == 0:
        raise EvalError(f"all {report.n_failed} utterance(s) failed: nothing was scored")
    if report.n_words == 0:
        raise EvalError(f"the {report.n_utterances} transcribed utterance(s) have only empty references: "
                        "WER is undefined")
