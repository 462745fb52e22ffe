"""Paired statistics of a WER difference between two systems on the same utterances.

A corpus-level WER delta measured on a few hundred utterances moves by several tenths of a point
when a handful of utterances flip, so every delta is reported with a paired bootstrap interval:
resample utterances with replacement (the same draw for both systems), recompute corpus WER
(summed errors / summed reference words) for each, and take the 2.5 / 97.5 percentiles of the
difference. Seeded, so a report is reproducible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

from whisper_eas.errors import InputError
from whisper_eas.evaluation.wer import word_errors

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0


@dataclass(frozen=True)
class PairedUtterance:
    """One utterance scored under both systems: word errors of each and reference words."""

    id: str
    errors_a: int
    errors_b: int
    n_words: int


@dataclass(frozen=True)
class PairedDelta:
    """WER of B minus WER of A (points), with its paired bootstrap 95% interval."""

    n_utterances: int
    n_words: int
    wer_a: float
    wer_b: float
    delta: float
    low: float
    high: float
    better: int  # utterances with fewer errors under B
    worse: int  # utterances with more errors under B
    same: int
    resamples: int
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.wer_a:.2f}% -> {self.wer_b:.2f}%: {self.delta:+.2f} points "
                f"[95% {self.low:+.2f}, {self.high:+.2f}], {self.better} better / {self.worse} worse / "
                f"{self.same} same of {self.n_utterances} ({self.n_words} words)")


def pair_transcripts(refs: dict[str, str], hyps_a: dict[str, str], hyps_b: dict[str, str]) -> list[PairedUtterance]:
    """Score the utterances both systems transcribed (ids in `refs` order)."""
    out = []
    for uid, ref in refs.items():
        if uid not in hyps_a or uid not in hyps_b:
            continue
        errors_a, n_words = word_errors(ref, hyps_a[uid])
        errors_b, _ = word_errors(ref, hyps_b[uid])
        out.append(PairedUtterance(uid, errors_a, errors_b, n_words))
    return out


def paired_bootstrap(
    pairs: Sequence[PairedUtterance], resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> PairedDelta:
    """Corpus-level WER delta (B - A, points) and its paired bootstrap 95% interval over utterances."""
    if not pairs:
        raise InputError("no utterances scored by both systems")
    a = np.array([p.errors_a for p in pairs], dtype=np.float64)
    b = np.array([p.errors_b for p in pairs], dtype=np.float64)
    words = np.array([p.n_words for p in pairs], dtype=np.float64)
    total = words.sum()
    if total == 0:
        raise InputError("the paired utterances have no reference words")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(pairs), size=(resamples, len(pairs)))
    sums = words[draws].sum(axis=1)
    deltas = 100.0 * ((b - a)[draws].sum(axis=1) / np.maximum(sums, 1.0))
    low, high = np.percentile(deltas, [2.5, 97.5])
    wer_a, wer_b = 100.0 * a.sum() / total, 100.0 * b.sum() / total
    return PairedDelta(
        n_utterances=len(pairs), n_words=int(total), wer_a=float(wer_a), wer_b=float(wer_b),
        delta=float(wer_b - wer_a), low=float(low), high=float(high),
        better=int((b < a).sum()), worse=int((b > a).sum()), same=int((b == a).sum()),
        resamples=resamples, seed=seed,
    )


def source_of(uid: str) -> str:
    """An utterance's source: its id prefix (`so762-...` -> `so762`, `vctk-p225_003` -> `vctk`,
    `ls-test-clean-...` -> `ls`); speech-val's SOURCE.md asks for WER per source."""
    return uid.split("-", 1)[0]


def by_source(pairs: Iterable[PairedUtterance]) -> dict[str, list[PairedUtterance]]:
    groups: dict[str, list[PairedUtterance]] = {}
    for pair in pairs:
        groups.setdefault(source_of(pair.id), []).append(pair)
    return dict(sorted(groups.items()))


def compare(
    refs: dict[str, str], hyps_a: dict[str, str], hyps_b: dict[str, str],
    resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
) -> dict:
    """The delta over all utterances and per source: {"all": PairedDelta dict, "sources": {...}}."""
    pairs = pair_transcripts(refs, hyps_a, hyps_b)
    groups = by_source(pairs)
    return {
        "all": paired_bootstrap(pairs, resamples, seed).to_dict(),
        "sources": {name: paired_bootstrap(group, resamples, seed).to_dict()
                    for name, group in groups.items() if sum(p.n_words for p in group)},
    }
