"""Pareto front and the chosen point of a (WER delta, speedup) search."""

from __future__ import annotations

from typing import Sequence


def dominates(a: dict, b: dict, speed_key: str = "e2e_speedup") -> bool:
    """a is at least as fast and as accurate as b, and strictly better in one."""
    no_worse = a["wer_delta"] <= b["wer_delta"] and a[speed_key] >= b[speed_key]
    better = a["wer_delta"] < b["wer_delta"] or a[speed_key] > b[speed_key]
    return no_worse and better


def pareto_front(points: Sequence[dict], speed_key: str = "e2e_speedup") -> list[dict]:
    """Points no other point dominates, fastest first (failed points excluded)."""
    valid = [p for p in points if p.get("error") is None and p.get(speed_key) is not None]
    front = [p for p in valid if not any(dominates(q, p, speed_key) for q in valid if q is not p)]
    return sorted(front, key=lambda p: -p[speed_key])


def choose(points: Sequence[dict], max_wer_increase: float, speed_key: str = "e2e_speedup") -> dict | None:
    """The fastest point whose WER delta is within the budget (ties: lower WER delta), or None."""
    ok = [p for p in points if p.get("error") is None and p.get(speed_key) is not None and p["wer_delta"] <= max_wer_increase]
    if not ok:
        return None
    return max(ok, key=lambda p: (p[speed_key], -p["wer_delta"]))
