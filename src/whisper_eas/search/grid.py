"""WER of a grid of prune configs over a manifest, sharing each batch's dense encoder prefix.

Results accumulate per config and utterance in `GridPoint`s, so an interrupted run resumes
where it stopped: a batch is only decoded for the configs that still lack its utterances.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from whisper_eas.audio import AudioError
from whisper_eas.config import PruneConfig
from whisper_eas.decoding import DecodingOptions
from whisper_eas.evaluation.evaluate import load_window
from whisper_eas.evaluation.manifest import Utterance
from whisper_eas.evaluation.wer import corpus_wer
from whisper_eas.guard import GuardOptions
from whisper_eas.runners.base import EncodedBatch
from whisper_eas.runners.torch_runner import TorchRunner
from whisper_eas.search.shared_prefix import DenseStates
from whisper_eas.window_decode import SHORT_FORM, decode_windows, window_requests


@dataclass
class GridPoint:
    """Per-utterance hypotheses, kept frames and guard fallbacks of one config."""

    config: PruneConfig | None
    hyps: dict[str, str] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    fallbacks: dict[str, str] = field(default_factory=dict)  # id -> why the guard re-ran it dense
    unguarded: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (sparse text, kept) before the re-run

    def score(self, refs: dict[str, str], n_frames: int = 1500, guarded: bool = True) -> dict:
        ids = [i for i in refs if i in self.hyps]
        hyps, kept = dict(self.hyps), dict(self.kept)
        if not guarded:
            for i, (text, count) in self.unguarded.items():
                hyps[i], kept[i] = text, count
        wer, words = corpus_wer([(refs[i], hyps[i]) for i in ids])
        sparsity = sum(1 - kept[i] / n_frames for i in ids) / max(1, len(ids))
        return {"wer": wer, "n_words": words, "n_utterances": len(ids), "sparsity": sparsity,
                "fallbacks": sum(1 for i in ids if i in self.fallbacks)}

    def to_state(self) -> dict:
        return {"hyps": self.hyps, "kept": self.kept, "fallbacks": self.fallbacks,
                "unguarded": {i: list(v) for i, v in self.unguarded.items()}}

    @classmethod
    def from_state(cls, config: PruneConfig | None, state: dict) -> "GridPoint":
        unguarded = {i: (v[0], int(v[1])) for i, v in state.get("unguarded", {}).items()}
        return cls(config, dict(state["hyps"]), dict(state["kept"]), dict(state["fallbacks"]), unguarded)


def evaluate_grid(
    runner: TorchRunner,
    utterances: list[Utterance],
    points: dict[str, GridPoint],
    options: DecodingOptions | None = None,
    guard: GuardOptions | None = None,
    batch_size: int = 8,
    failed: dict[str, str] | None = None,
    after_batch: Callable[[int, int], None] | None = None,
    group_rows: int = 32,
) -> dict[str, str]:
    """Fill every point's results for every utterance (dense included); returns {id: failure}.
    `group_rows`: decoder rows per pass (32 suits a CPU; a GPU takes more)."""
    options = options or DecodingOptions(language="en")
    guard = guard or GuardOptions()
    failed = {} if failed is None else failed
    points.setdefault("dense", GridPoint(None))
    for first in range(0, len(utterances), batch_size):
        batch = [u for u in utterances[first : first + batch_size] if u.id not in failed]
        todo = {k: p for k, p in points.items() if any(u.id not in p.hyps for u in batch)}
        if todo:
            ok, mels = [], []
            for utt in batch:
                try:
                    mels.append(load_window(utt, runner.n_mels))
                    ok.append(utt)
                except AudioError as error:
                    failed[utt.id] = str(error)
            if ok:
                _grid_batch(runner, ok, torch.stack(mels), points, todo, options, guard, group_rows)
        if after_batch:
            after_batch(min(first + batch_size, len(utterances)), len(utterances))
    return failed


def _encode(states: DenseStates, config: PruneConfig) -> list[EncodedBatch]:
    """Fixed ratios encode as one batch; adaptive counts and speech regions differ per window, so
    one part per window."""
    if not config.per_input:
        return [states.encode(config)]
    return [states.select(i).encode(config) for i in range(states.batch)]


def _expected_kept(config: PruneConfig) -> float:
    share = config.keep_ratio if config.keep_ratio is not None else config.max_keep
    return share * (0.3 if config.padding == "drop" else 1.0)  # a short clip's region is ~30% of the window


def _grid_batch(runner, batch, mel, points, todo, options, guard, group_rows: int = 32) -> None:
    """Dense once, then every config's tail; configs are decoded together, `group_rows` rows at a
    time, padded to the longest kept count with a cross-attention mask (`EncodedBatch.padded`).

    On a CPU the decoder step reads its weights (80 MB of output projection alone for tiny) once
    per step whatever the rows, so 32 rows decode 1.8x faster than four batches of 8 (tiny.en,
    2-core EPYC). Configs go in order of kept share, so a group pads little. Decoding, language,
    guard re-runs are the product's pipeline (`window_decode.decode_windows`); only the encoder
    is the search's own (the shared dense prefix).
    """
    states = DenseStates(runner.model, mel.to(runner.device, runner.dtype))
    requests = window_requests(mel, options)
    dense_encoded = states.encode(None)
    dense = decode_windows(runner, requests, options, SHORT_FORM, guard, encoded=dense_encoded)
    for utt, outcome in zip(batch, dense):
        points["dense"].hyps[utt.id], points["dense"].kept[utt.id] = outcome.result.text, states.n_frames
    pending = sorted((p for p in todo.values() if p.config is not None), key=lambda p: -_expected_kept(p.config))
    group: list[tuple[GridPoint, list[EncodedBatch]]] = []
    for point in pending:
        if group and (len(group) + 1) * states.batch > group_rows:
            _decode_group(runner, batch, requests, group, dense_encoded, options, guard)
            group = []
        group.append((point, _encode(states, point.config)))
    if group:
        _decode_group(runner, batch, requests, group, dense_encoded, options, guard)


def _decode_group(runner, batch, requests, group, dense_encoded: EncodedBatch, options, guard) -> None:
    """Several configs' encodings of the same windows as one padded batch through the pipeline; a
    guard re-run decodes the window's shared dense encoding."""
    parts = [part for _, point_parts in group for part in point_parts]
    encoded = EncodedBatch.padded(parts) if len(parts) > 1 else parts[0]
    width = len(batch)
    outcomes = iter(decode_windows(
        runner, requests * len(group), options, SHORT_FORM, guard, encoded=encoded,
        encode_dense=lambda rows: dense_encoded.select([row % width for row in rows])))
    for point, _ in group:
        for utt in batch:
            outcome = next(outcomes)
            point.hyps[utt.id], point.kept[utt.id] = outcome.result.text, outcome.kept_frames
            if outcome.fallback and outcome.unguarded is not None:
                point.fallbacks[utt.id] = outcome.fallback
                point.unguarded[utt.id] = (outcome.unguarded.result.text, outcome.unguarded.kept_frames)
