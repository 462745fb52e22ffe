"""The one timing harness of the benchmarks: warm-up, repeats, systems taking turns, median and spread.

Two kinds of timing, as faster-whisper's benchmarks and PyTorch's own do them:

* whole jobs (a pass over a manifest, one recording, one window's transcription): `take_turns`
  times each call end to end with `time.perf_counter`, after an untimed warm-up, the systems
  taking turns within every round (or on every item) so that drift on a shared machine hits all
  of them alike; the device is synchronized before each clock read (`device_sync`);
* one short call repeated (an encoder pass, a decoder step): `per_call` hands it to
  `torch.utils.benchmark.Timer`, which warms up, synchronizes CUDA and picks the repeat count.

Both give `Samples`: the seconds of each timed run, with their median and spread.
"""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Generic, Mapping, Sequence, TypeVar

from whisper_eas.errors import ConfigError

Item = TypeVar("Item")
Sync = Callable[[], None]
ORDERS = ("round", "item")


@dataclass
class Samples:
    """Seconds of the timed runs of one thing."""

    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def low(self) -> float:
        return min(self.seconds)

    @property
    def high(self) -> float:
        return max(self.seconds)

    @property
    def spread(self) -> float:
        """(max - min) / median: how far apart the repeats were."""
        return (self.high - self.low) / self.median if self.median else float("nan")

    def ms(self) -> dict[str, float]:
        """Median, min and max in milliseconds (the GPU benchmark's JSON form)."""
        return {"median_ms": 1e3 * self.median, "min_ms": 1e3 * self.low, "max_ms": 1e3 * self.high}

    def describe(self) -> str:
        return f"{self.median:.3f} s ({self.low:.3f}-{self.high:.3f})"


@dataclass
class Turns(Generic[Item]):
    """One system's runs under `take_turns`: `seconds[r][i]` and `outputs[r][i]` of item i in round r."""

    name: str
    seconds: list[list[float]] = field(default_factory=list)
    outputs: list[list[Any]] = field(default_factory=list)
    error: Exception | None = None  # the exception that stopped it (with `keep_going`)

    @property
    def totals(self) -> Samples:
        """Seconds per round over every item."""
        return Samples([sum(round_) for round_ in self.seconds])

    def item(self, index: int) -> Samples:
        """Seconds of one item over the rounds."""
        return Samples([round_[index] for round_ in self.seconds])

    @property
    def last(self) -> list[Any]:
        """The outputs of the last round (texts, for WER)."""
        return self.outputs[-1] if self.outputs else []


def device_sync(device: Any) -> Sync | None:
    """A function that waits for `device`'s queued work (CUDA), or None (the CPU needs none)."""
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return None


def clock(fn: Callable[[], Any], sync: Sync | None = None) -> tuple[float, Any]:
    """(seconds, result) of one call, the device synchronized before both clock reads."""
    if sync:
        sync()
    start = time.perf_counter()
    result = fn()
    if sync:
        sync()
    return time.perf_counter() - start, result


def take_turns(
    systems: Mapping[str, Callable[[Item], Any]],
    items: Sequence[Item],
    repeats: int,
    *,
    warmup: Sequence[Item] = (),
    order: str = "round",
    sync: Sync | None = None,
    around: Callable[[str], ContextManager] | None = None,
    keep_going: bool = False,
    log: Callable[[str], None] | None = print,
) -> dict[str, Turns]:
    """Run every system on every item `repeats` times (at least once), timing each call.

    `warmup`: items each system runs once, untimed, first. `order="round"`: in each round every
    system runs all items before the next system starts; `"item"`: the systems take turns on each
    item (finer interleaving for long runs on a busy machine). `around(name)`: a context around
    each system's share of a round, or each call with `order="item"` (e.g. a memory high-water mark). `keep_going`: a system that
    raises is recorded (`Turns.error`) and dropped while the others go on; else the error rises.
    """
    if order not in ORDERS:
        raise ConfigError(f"order must be one of {ORDERS}, got {order!r}")
    turns = {name: Turns(name) for name in systems}
    for name, fn in systems.items():
        if log and warmup:
            log(f"warm-up {name}")
        _guarded(turns[name], keep_going, lambda: [fn(item) for item in warmup])
    for r in range(max(repeats, 1)):
        live = [name for name in systems if turns[name].error is None]
        for name in live:
            turns[name].seconds.append([0.0] * len(items))
            turns[name].outputs.append([None] * len(items))
        groups = [[(n, i) for i in range(len(items))] for n in live] if order == "round" else \
            [[(n, i) for n in live] for i in range(len(items))]
        for group in groups:
            with around(group[0][0]) if around and order == "round" else nullcontext():
                for name, i in group:
                    if turns[name].error is not None:
                        continue
                    with around(name) if around and order == "item" else nullcontext():
                        _guarded(turns[name], keep_going, lambda: _timed(turns[name], systems[name], items, r, i, sync))
        if log:
            log(f"repeat {r + 1}/{max(repeats, 1)}: " + ", ".join(
                f"{name} {sum(turns[name].seconds[r]):.2f}s" for name in live if turns[name].error is None))
    return turns


def _timed(turn: Turns, fn: Callable, items: Sequence, r: int, i: int, sync: Sync | None) -> None:
    turn.seconds[r][i], turn.outputs[r][i] = clock(lambda: fn(items[i]), sync)


def _guarded(turn: Turns, keep_going: bool, run: Callable[[], Any]) -> None:
    try:
        run()
    except Exception as error:  # noqa: BLE001 - with keep_going, reported per system by the caller
        if not keep_going:
            raise
        turn.error = error


def per_call(fn: Callable[[], Any], *, min_run_time: float = 0.2, warmup: int = 1, label: str = "") -> Samples:
    """Seconds per call of a short `fn`, through `torch.utils.benchmark.Timer` (warm-up, CUDA
    synchronization and the number of calls per measurement chosen by `blocked_autorange`)."""
    from torch.utils.benchmark import Timer

    for _ in range(warmup):
        fn()
    measurement = Timer(stmt="fn()", globals={"fn": fn}, label=label).blocked_autorange(min_run_time=min_run_time)
    return Samples(list(measurement.times))
