"""Latency of a prune config measured side by side with the dense model.

Dense and sparse runs alternate on the same windows (batch 1, as a user transcribes a file), after
one warm-up window, so machine noise hits both alike; medians over repeats. End to end means the whole
window transcription including any dense re-run the quality guard triggers.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch

from whisper_eas.decoding import DecodingOptions
from whisper_eas.guard import GuardOptions
from whisper_eas.runners.base import Runner
from whisper_eas.windows import decode_windows


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
    decode_windows(runner, batch, options, guard, encoded=encoded)
    _sync(runner)
    end = time.perf_counter()
    return 1e3 * (encoded_at - start), 1e3 * (end - start)


def measure_side_by_side(
    dense: Runner,
    sparse: Runner,
    windows: list[torch.Tensor],
    options: DecodingOptions,
    guard: GuardOptions,
    repeats: int = 3,
) -> SideBySide:
    """Alternate dense and sparse transcriptions of `windows` ([n_mels, 3000] each).

    Each window is timed `repeats` times (at least once); only the first window gets an untimed
    warm-up round, since after it both runners' kernels and buffers are warm for every window.
    The encoder time is read inside the end-to-end run rather than from runs of its own, which
    had cost a third of the latency phase.
    """
    times: dict[str, list[float]] = {"de": [], "dx": [], "se": [], "sx": []}
    for i, mel in enumerate(windows):
        batch = mel.unsqueeze(0)
        warm_up = 1 if i == 0 else 0
        for rep in range(max(repeats, 1) + warm_up):
            sample = dict(zip(("de", "dx"), _time_window(dense, batch, options, guard)))
            sample.update(zip(("se", "sx"), _time_window(sparse, batch, options, guard)))
            if rep >= warm_up:
                for key, value in sample.items():
                    times[key].append(value)
    med = {k: statistics.median(v) for k, v in times.items()}
    return SideBySide(med["de"], med["dx"], med["se"], med["sx"])
