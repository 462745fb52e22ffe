"""WER evaluation of one runner (model + prune config) over a manifest."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from whisper_eas.audio import AudioError, load_audio
from whisper_eas.decoding import DecodingOptions
from whisper_eas.evaluation.manifest import Utterance
from whisper_eas.evaluation.wer import corpus_wer, word_errors
from whisper_eas.features import N_SAMPLES, window_features
from whisper_eas.guard import GuardOptions
from whisper_eas.runners.base import Runner
from whisper_eas.windows import decode_windows


@dataclass
class UtteranceScore:
    id: str
    ref: str
    hyp: str | None
    wer: float | None  # percent; None when the file failed
    n_words: int
    error: str | None = None
    kept_frames: int | None = None
    fallback: str | None = None


@dataclass
class EvalReport:
    model: str
    config: dict | None
    backend: str
    device: str
    wer: float
    n_utterances: int
    n_words: int
    n_failed: int
    wall_s: float
    sparsity: float  # mean share of encoder frames dropped
    fallbacks: int  # windows the guard re-ran dense
    utterances: list[UtteranceScore] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        cfg = "dense" if self.config is None else f"layer {self.config['layer']} " + (
            f"keep {self.config['keep_ratio']}" if self.config.get("keep_ratio") is not None else f"mass {self.config['mass']}"
        )
        return (
            f"{self.model} [{cfg}] WER {self.wer:.2f}% on {self.n_utterances} utterances ({self.n_words} words), "
            f"sparsity {100 * self.sparsity:.0f}%, {self.fallbacks} dense re-runs, {self.n_failed} failed, "
            f"{self.wall_s:.1f}s"
        )


def load_window(utt: Utterance, n_mels: int) -> torch.Tensor:
    """One utterance as a padded 30 s window; longer audio is an error for a single-window eval."""
    audio = load_audio(utt.path)
    if audio.shape[0] > N_SAMPLES:
        raise AudioError(utt.path, f"{audio.shape[0] / 16000:.1f}s is longer than one 30 s window (use trt-transcribe)")
    return window_features(audio, n_mels)


def evaluate(
    runner: Runner,
    utterances: list[Utterance],
    options: DecodingOptions | None = None,
    guard: GuardOptions | None = None,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Transcribe every utterance (batched windows), score WER; failed files are reported, not fatal."""
    options = options or DecodingOptions()
    start = time.perf_counter()
    scores: list[UtteranceScore] = []
    pending: list[tuple[Utterance, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        mel = torch.stack([m for _, m in pending])
        for (utt, _), window in zip(pending, decode_windows(runner, mel, options, guard)):
            errors, n_words = word_errors(utt.text, window.result.text)
            wer = 100.0 * errors / n_words if n_words else 0.0
            scores.append(UtteranceScore(utt.id, utt.text, window.result.text, wer, n_words, None, window.kept_frames, window.fallback))
        pending.clear()

    for done, utt in enumerate(utterances, start=1):
        try:
            pending.append((utt, load_window(utt, runner.n_mels)))
        except AudioError as error:
            scores.append(UtteranceScore(utt.id, utt.text, None, None, 0, str(error)))
        if len(pending) >= batch_size:
            flush()
        if progress:
            progress(done, len(utterances))
    flush()
    order = {u.id: i for i, u in enumerate(utterances)}
    scores.sort(key=lambda s: order[s.id])
    ok = [s for s in scores if s.error is None]
    wer, n_words = corpus_wer([(s.ref, s.hyp or "") for s in ok])
    n_frames = 1500
    sparsity = sum(1 - (s.kept_frames or n_frames) / n_frames for s in ok) / max(1, len(ok))
    return EvalReport(
        model=runner.model_name,
        config=runner.prune.to_dict() if runner.prune else None,
        backend=runner.backend,
        device=runner.device,
        wer=wer,
        n_utterances=len(ok),
        n_words=n_words,
        n_failed=len(scores) - len(ok),
        wall_s=time.perf_counter() - start,
        sparsity=sparsity,
        fallbacks=sum(1 for s in ok if s.fallback),
        utterances=scores,
    )
