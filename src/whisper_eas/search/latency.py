"""Latency of a prune config measured side by side with the dense model.

Dense and sparse runs alternate on the same windows (batch 1, as a user transcribes a file), after
one warm-up window, so machine noise hits both alike; medians over repeats. One dense run serves a
group of sparse configs timed right after it. End to end means the whole
window transcription including any dense re-run the quality guard triggers.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

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


def _sync(runner: Runner) -> None:
    if str(runner.device).startswith("cuda"):
        torch.cuda.synchronize()


def _time_window(runner: Runner, batch: torch.Tensor, options: DecodingOptions, guard: GuardOptions) -> tuple[float, float]:
    """(encoder ms, end-to-end ms) of one transcription, the encoder timed inside the end-to-end run."""
    _sync(runner)
    start = time.perf_counter()
    encoded = runner.encode(batch)
    _sync(runner)
    encoded_at = time.perf_counter()
    decode_windows(runner, window_requests(batch, options), options, SHORT_FORM, guard, encoded=encoded)
    _sync(runner)
    end = time.perf_counter()
    return 1e3 * (encoded_at - start), 1e3 * (end - start)


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

    Each window is timed `repeats` times (at least once); only the first window gets an untimed
    warm-up round, since after it every runner's kernels and buffers are warm for every window.
    The encoder time is read inside the end-to-end run rather than from runs of its own, which
    had cost a third of the latency phase. A runner that fails gets its exception, the others go on.
    """
    dense_times: dict[str, list[float]] = {"encoder": [], "e2e": []}
    times = [{"encoder": [], "e2e": []} for _ in sparse]
    failed: dict[int, Exception] = {}
    for i, mel in enumerate(windows):
        batch = mel.unsqueeze(0)
        warm_up = 1 if i == 0 else 0
        for rep in range(max(repeats, 1) + warm_up):
            samples = [(dense_times, _time_window(dense, batch, options, guard))]
            for j, runner in enumerate(sparse):
                if j in failed:
                    continue
                try:
                    samples.append((times[j], _time_window(runner, batch, options, guard)))
                except Exception as error:  # noqa: BLE001 - reported per config by the caller
                    failed[j] = error
            if rep >= warm_up:
                for target, (encoder_ms, e2e_ms) in samples:
                    target["encoder"].append(encoder_ms)
                    target["e2e"].append(e2e_ms)
    de, dx = statistics.median(dense_times["encoder"]), statistics.median(dense_times["e2e"])
    return [failed[j] if j in failed else SideBySide(de, dx, statistics.median(t["encoder"]), statistics.median(t["e2e"]))
            for j, t in enumerate(times)]
