"""The shared timing harness (benchmark.timing): turn order, warm-up, outputs, failures, statistics."""

from __future__ import annotations

import pytest

from whisper_eas.benchmark.timing import Samples, per_call, take_turns
from whisper_eas.errors import ConfigError


def _recorder(calls: list, name: str):
    def run(item):
        calls.append((name, item))
        return f"{name}:{item}"

    return run


@pytest.mark.parametrize("order, expected", [
    ("round", [("a", 1), ("a", 2), ("b", 1), ("b", 2)]),  # each system over every item in turn
    ("item", [("a", 1), ("b", 1), ("a", 2), ("b", 2)]),  # the systems take turns on each item
])
def test_take_turns_warms_up_then_interleaves(order, expected):
    calls: list = []
    turns = take_turns({"a": _recorder(calls, "a"), "b": _recorder(calls, "b")}, [1, 2], repeats=2,
                       warmup=[0], order=order, log=None)
    assert calls[:2] == [("a", 0), ("b", 0)]  # warm-up, untimed
    assert calls[2:] == expected * 2
    assert len(turns["a"].seconds) == 2 and len(turns["a"].seconds[0]) == 2  # [round][item]
    assert turns["b"].last == ["b:1", "b:2"] and len(turns["a"].totals.seconds) == 2


def test_a_failing_system_is_dropped_with_keep_going_and_raises_without():
    def broken(item):
        raise RuntimeError("boom")

    turns = take_turns({"ok": lambda item: item, "broken": broken}, [1, 2], repeats=3, keep_going=True, log=None)
    assert isinstance(turns["broken"].error, RuntimeError) and turns["broken"].seconds[0][1] == 0.0
    assert len(turns["broken"].seconds) == 1 and len(turns["ok"].seconds) == 3
    with pytest.raises(RuntimeError, match="boom"):
        take_turns({"broken": broken}, [1], repeats=1, log=None)
    with pytest.raises(ConfigError, match="order"):
        take_turns({"ok": lambda item: item}, [1], repeats=1, order="file", log=None)


def test_samples_and_per_call():
    samples = Samples([3.0, 1.0, 2.0])
    assert (samples.median, samples.low, samples.high, samples.spread) == (2.0, 1.0, 3.0, 1.0)
    assert samples.ms() == {"median_ms": 2000.0, "min_ms": 1000.0, "max_ms": 3000.0}
    counted = []
    measured = per_call(lambda: counted.append(1), min_run_time=0.01)
    assert measured.seconds and measured.median > 0 and len(counted) > len(measured.seconds)
