"""Pareto front and the chosen point of a search.

The choice is a protocol, not a maximum: a point qualifies when its WER delta on the tuning set
is within the budget *and* the upper end of its paired 95% interval is within twice the budget
(a point whose delta is small only by luck of a few utterances does not qualify); among those the
sparsest wins. It is then re-measured on a confirmation set nobody tuned on (`run.confirm`), and
ships only if it holds there too.
"""

from __future__ import annotations

from typing import Sequence

DEFAULT_BUDGET = 0.5  # WER points
BOUND_FACTOR = 2.0  # the interval's upper end may reach this many budgets


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


def qualifies(point: dict, budget: float = DEFAULT_BUDGET, bound_factor: float = BOUND_FACTOR) -> bool:
    """Delta within the budget and the paired interval's upper end within `bound_factor` budgets."""
    high = point.get("ci_high")
    return (point.get("error") is None and point["wer_delta"] <= budget
            and high is not None and high <= bound_factor * budget)


def choose(points: Sequence[dict], budget: float = DEFAULT_BUDGET, bound_factor: float = BOUND_FACTOR) -> dict | None:
    """The sparsest qualifying point (ties: the lower delta, then the faster), or None."""
    ok = [p for p in points if qualifies(p, budget, bound_factor)]
    if not ok:
        return None
    return max(ok, key=lambda p: (round(p["sparsity"], 4), -p["wer_delta"], p.get("e2e_speedup") or 0.0))


def holds(confirmation: dict, budget: float = DEFAULT_BUDGET, bound_factor: float = BOUND_FACTOR) -> bool:
    """A confirmation (a `stats.PairedDelta` dict) keeps the chosen point within the same rule."""
    return confirmation["delta"] <= budget and confirmation["high"] <= bound_factor * budget
