"""Latency of a prune config measured side by side with the dense model.

Dense and sparse runs alternate on the same windows (batch 1, as a user transcribes a file), after
one warm-up window, so machine noise hits both alike; medians over repeats (the shared harness,
`benchmark.timing`). One dense run serves a group of sparse configs timed right after it. End to
end means the whole window transcription including any dense re-run the quality guard triggers.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from whisper_eas.benchmark.timing import Turns, clock, device_sync, take_turns
from whisper_eas.decoding import DecodingOptions
from whisper_eas.guard import GuardOptions
from whisper_eas.runners.base import Runner
from whisper_eas.window_decode import SHORT_FORM, decode_windows, window_requests


@dataclass
class SideBySide:
    """Median per-window milliseconds, dense and sparse, and their ratios."""

    dense_encoder_ms: float
    dense_e2e_ms: float
    encoder_ms: float
    e2e_ms: float

    @property
    def encoder_speedup(self) -> float:
        return self.dense_encoder_ms / self.encoder_ms

    @property
    def e2e_speedup(self) -> float:
        return self.dense_e2e_ms / self.e2e_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "encoder_speedup": self.encoder_speedup, "e2e_speedup": self.e2e_speedup}


def _window_run(runner: Runner, options: DecodingOptions, guard: GuardOptions, sync):
    """One window's transcription (the harness times it end to end); returns the encoder's seconds
    within it, so the encoder is never run on its own."""

    def run(mel: torch.Tensor) -> float:
        batch = mel.unsqueeze(0)
        encoder_s, encoded = clock(lambda: runner.encode(batch), sync)
        decode_windows(runner, window_requests(batch, options), options, SHORT_FORM, guard, encoded=encoded)
        return encoder_s

    return run


def measure_against_dense(
    dense: Runner,
    sparse: Sequence[Runner],
    windows: list[torch.Tensor],
    options: DecodingOptions,
    guard: GuardOptions,
    repeats: int = 3,
) -> list[SideBySide | Exception]:
    """Time dense, then each sparse runner, on every window in turn: one dense run serves the
    group (the search times 8 configs per dense run; timing dense beside every config had been
    half of the latency phase), and each config is still timed within seconds of its dense run.

    Each window is timed `repeats` times (at least once), the runners taking turns on it
    (`benchmark.timing.take_turns`, order "item"); only the first window gets an untimed warm-up,
    since after it every runner's kernels and buffers are warm for every window. The encoder time
    is read inside the end-to-end run rather than from runs of its own, which had cost a third of
    the latency phase. A sparse runner that fails gets its exception, the others go on.
    """
    sync = device_sync(dense.device)
    runs = {"dense": _window_run(dense, options, guard, sync),
            **{j: _window_run(runner, options, guard, sync) for j, runner in enumerate(sparse)}}
    turns = take_turns(runs, windows, repeats, warmup=windows[:1], order="item", sync=sync, keep_going=True, log=None)
    if turns["dense"].error is not None:
        raise turns["dense"].error
    return [turns[j].error or _side_by_side(turns["dense"], turns[j]) for j in range(len(sparse))]


def _side_by_side(dense: Turns, sparse: Turns) -> SideBySide:
    def ms(turn: Turns) -> tuple[float, float]:
        encoder = [s for round_ in turn.outputs for s in round_]
        e2e = [s for round_ in turn.seconds for s in round_]
        return 1e3 * statistics.median(encoder), 1e3 * statistics.median(e2e)

    return SideBySide(*ms(dense), *ms(sparse))
