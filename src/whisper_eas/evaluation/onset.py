"""Where in an utterance pruning loses words: each reference word's error placed in time (onset,
middle or end of the speech) beside the share of encoder frames kept there.

A word's time is approximated by its rank: the speech span (from the log-mel energy) is divided
evenly among the reference words. That is coarse for a single word, but enough to tell an
utterance's opening clause from its middle, which is the question: on unseen speech the dominant
failure was the first words of an utterance vanishing while the rest stayed intact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch

from whisper_eas.evaluation.wer import normalize

PARTS = ("onset", "middle", "end")
ONSET_SHARE = 0.2  # first 20% of the speech span (and of the words) is the onset, last 20% the end


def word_status(reference: str, hypothesis: str) -> list[str]:
    """Per normalized reference word: 'ok', 'sub' or 'del' (insertions are not attached to a word)."""
    import jiwer

    ref, hyp = normalize(reference).split(), normalize(hypothesis)
    if not ref:
        return []
    status = ["ok"] * len(ref)
    for chunk in jiwer.process_words(" ".join(ref), hyp).alignments[0]:
        if chunk.type in ("substitute", "delete"):
            for i in range(chunk.ref_start_idx, chunk.ref_end_idx):
                status[i] = "sub" if chunk.type == "substitute" else "del"
    return status


def first_words_lost(reference: str, hypothesis: str, n: int = 3, at_least: int = 2) -> bool:
    """True when at least `at_least` of the first `n` reference words are deleted or substituted."""
    status = word_status(reference, hypothesis)[:n]
    return bool(status) and sum(s != "ok" for s in status) >= min(at_least, len(status))


def speech_span(mel: torch.Tensor, level: float = 0.35) -> tuple[int, int]:
    """(first, last + 1) encoder frame of speech in one window's log-mel [n_mels, 3000].

    A mel frame is speech when its mean log-mel rises `level` of the way from the window's quiet
    floor (10th percentile of the content) to its loud level (95th percentile); the padding
    (constant columns) is left out first. Two mel frames per encoder frame.
    """
    columns = mel.float()
    varies = columns.amax(dim=0) != columns.amin(dim=0)
    content = int(varies.nonzero().max()) + 1 if bool(varies.any()) else 0
    if content == 0:
        return 0, 0
    energy = columns[:, :content].mean(dim=0)
    low, high = torch.quantile(energy, 0.10), torch.quantile(energy, 0.95)
    loud = (energy > low + level * (high - low)).nonzero().flatten()
    if loud.numel() == 0:
        return 0, (content + 1) // 2
    return int(loud.min()) // 2, (int(loud.max()) + 2) // 2


def part_of(position: float) -> str:
    """'onset', 'middle' or 'end' for a relative position in [0, 1] of the speech."""
    return "onset" if position < ONSET_SHARE else "end" if position >= 1 - ONSET_SHARE else "middle"


def part_frames(span: tuple[int, int], part: str) -> tuple[int, int]:
    """Encoder frames [a, b) of one part of the speech span."""
    start, end = span
    length = max(1, end - start)
    bounds = {"onset": (0.0, ONSET_SHARE), "middle": (ONSET_SHARE, 1 - ONSET_SHARE), "end": (1 - ONSET_SHARE, 1.0)}
    lo, hi = bounds[part]
    return start + int(round(lo * length)), max(start + int(round(lo * length)) + 1, start + int(round(hi * length)))


def kept_share(kept: Sequence[int], frames: tuple[int, int]) -> float:
    """Share of the frames in [a, b) that the selection kept."""
    a, b = frames
    return sum(1 for i in kept if a <= i < b) / max(1, b - a)


@dataclass
class PartTally:
    words: int = 0
    errors_dense: int = 0
    errors_pruned: int = 0
    kept_share_sum: float = 0.0
    utterances: int = 0

    @property
    def kept_share(self) -> float:
        return self.kept_share_sum / max(1, self.utterances)


@dataclass
class OnsetReport:
    """Word errors per part of the speech, dense and pruned, and the kept-frame share there."""

    parts: dict[str, PartTally] = field(default_factory=lambda: {p: PartTally() for p in PARTS})
    onset_lost: list[str] = field(default_factory=list)  # first words lost pruned, present dense
    onset_lost_dense: list[str] = field(default_factory=list)  # first words lost dense, present pruned
    n_utterances: int = 0

    def to_dict(self) -> dict:
        out = asdict(self)
        for name, tally in self.parts.items():
            out["parts"][name]["kept_share"] = tally.kept_share
        return out

    def table(self) -> str:
        lines = [f"{'part':<7} {'words':>6} {'err dense':>9} {'err pruned':>10} {'extra %':>8} {'kept share':>10}"]
        for name, t in self.parts.items():
            extra = 100.0 * (t.errors_pruned - t.errors_dense) / max(1, t.words)
            lines.append(f"{name:<7} {t.words:>6} {t.errors_dense:>9} {t.errors_pruned:>10} {extra:>+8.2f} "
                         f"{t.kept_share:>10.2f}")
        lines.append(f"first words lost pruned but present dense: {len(self.onset_lost)} of {self.n_utterances}"
                     f" (the reverse: {len(self.onset_lost_dense)})")
        return "\n".join(lines)


def diagnose(
    refs: dict[str, str],
    dense: dict[str, str],
    pruned: dict[str, str],
    spans: dict[str, tuple[int, int]],
    kept: dict[str, Sequence[int]] | None = None,
) -> OnsetReport:
    """Tally each reference word's status by part of the speech (dense and pruned) and, where the
    kept frame indices are given, the share of frames kept in each part."""
    report = OnsetReport()
    for uid, ref in refs.items():
        if uid not in dense or uid not in pruned:
            continue
        status_dense, status_pruned = word_status(ref, dense[uid]), word_status(ref, pruned[uid])
        n = len(status_dense)
        if not n:
            continue
        report.n_utterances += 1
        for i, (d, p) in enumerate(zip(status_dense, status_pruned)):
            tally = report.parts[part_of((i + 0.5) / n)]
            tally.words += 1
            tally.errors_dense += d != "ok"
            tally.errors_pruned += p != "ok"
        if kept is not None and uid in kept and uid in spans:
            for name, tally in report.parts.items():
                tally.kept_share_sum += kept_share(kept[uid], part_frames(spans[uid], name))
                tally.utterances += 1
        lost_pruned, lost_dense = first_words_lost(ref, pruned[uid]), first_words_lost(ref, dense[uid])
        if lost_pruned and not lost_dense:
            report.onset_lost.append(uid)
        if lost_dense and not lost_pruned:
            report.onset_lost_dense.append(uid)
    return report
