"""Prune configuration: one frozen dataclass, validated once, up front."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

# How frames are chosen once they are scored.
#   attentive: the published method, top-k by attention received.
#   uniform:   a plain stride over the window (baseline: no attention used).
#   truncate:  the first K frames (baseline: no attention used).
#   coverage:  attention-weighted stride: frames are placed at equal quantiles of a density that
#              mixes attention with a uniform floor, so every stretch of the window keeps frames
#              and dense speech keeps more of them (ours).
STRATEGIES = ("attentive", "uniform", "truncate", "coverage")
# How a layer's attention probabilities become one score per frame (attention *received*).
#   mean:        averaged over heads and query positions (the published score).
#   mean_noself: the same, leaving out each query's attention to itself.
#   max_head:    the largest per-head average, so one head tracking speech is enough.
SCORINGS = ("mean", "mean_noself", "max_head")
MAX_QUERY_STRIDE = 64


@dataclass(frozen=True)
class PruneConfig:
    """Where and how much to sparsify the encoder.

    `layer` is 1-based: the output of the layer-th encoder block is pruned and the remaining blocks
    run on the kept frames. Either `keep_ratio` (a fixed share of the frames) or `mass` (adaptive:
    the fewest frames holding at least this share of the attention, within [min_keep, max_keep]).
    """

    layer: int
    keep_ratio: float | None = 0.5
    strategy: str = "attentive"
    scoring: str = "mean"
    mass: float | None = None
    min_keep: float = 0.1  # adaptive lower bound, share of frames
    max_keep: float = 1.0  # adaptive upper bound, share of frames
    query_stride: int = 1  # score from every n-th query row only (cheaper softmax)
    merge: bool = False  # fold each dropped frame into its nearest kept frame
    uniform_floor: float = 0.5  # coverage strategy: share of the density spread uniformly

    def __post_init__(self) -> None:
        if not isinstance(self.layer, int) or isinstance(self.layer, bool) or self.layer < 1:
            raise ValueError(f"layer must be an integer >= 1 (1-based encoder block), got {self.layer!r}")
        if (self.keep_ratio is None) == (self.mass is None):
            raise ValueError("give exactly one of keep_ratio (fixed) or mass (adaptive)")
        if self.keep_ratio is not None and not (0.0 < self.keep_ratio <= 1.0):
            raise ValueError(f"keep_ratio must be in (0, 1], got {self.keep_ratio!r}")
        if self.mass is not None and not (0.0 < self.mass <= 1.0):
            raise ValueError(f"mass must be in (0, 1], got {self.mass!r}")
        if not (0.0 < self.min_keep <= self.max_keep <= 1.0):
            raise ValueError(f"need 0 < min_keep <= max_keep <= 1, got {self.min_keep!r}, {self.max_keep!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}, got {self.scoring!r}")
        if not (1 <= self.query_stride <= MAX_QUERY_STRIDE):
            raise ValueError(f"query_stride must be in 1..{MAX_QUERY_STRIDE}, got {self.query_stride!r}")
        if not (0.0 <= self.uniform_floor <= 1.0):
            raise ValueError(f"uniform_floor must be in [0, 1], got {self.uniform_floor!r}")
        if self.mass is not None and self.strategy in ("uniform", "truncate"):
            raise ValueError(f"adaptive mass needs attention scores; strategy {self.strategy!r} has none")

    @property
    def adaptive(self) -> bool:
        return self.mass is not None

    @property
    def uses_attention(self) -> bool:
        return self.strategy not in ("uniform", "truncate")

    def check_model(self, n_layers: int) -> None:
        """Raise a clear error when the layer does not exist in a model with `n_layers` blocks."""
        if self.layer > n_layers:
            raise ValueError(f"layer {self.layer} is outside this encoder's 1..{n_layers} blocks")

    def keep_count(self, n_frames: int) -> int:
        """Frames kept by a fixed ratio: round(keep_ratio * T), at least one."""
        if self.keep_ratio is None:
            raise ValueError("an adaptive config has no fixed keep count")
        return max(1, min(n_frames, int(math.floor(self.keep_ratio * n_frames + 0.5))))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PruneConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown prune config keys: {', '.join(sorted(unknown))}")
        return cls(**data)

    def with_(self, **changes: Any) -> "PruneConfig":
        return replace(self, **changes)

    def label(self) -> str:
        """Short human-readable form, e.g. `attentive L1 k0.50` or `coverage L2 m0.95`."""
        amount = f"k{self.keep_ratio:.2f}" if self.keep_ratio is not None else f"m{self.mass:.2f}"
        extra = "+merge" if self.merge else ""
        return f"{self.strategy}{extra} L{self.layer} {amount}"
