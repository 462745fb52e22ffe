"""Prune configuration: one frozen dataclass, validated once, up front."""

from __future__ import annotations

import math
import re
import typing
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from whisper_eas.errors import ConfigError

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
# What happens to a padded window's trailing padding (detected from the log-mel: padding columns
# are constant across mel bins, speech never is).
#   keep: the selection runs over the whole window (padding competes with speech for frames).
#   drop: frames past the speech region (max(content, `speech_floor` s) + `speech_margin` s)
#         are dropped wholesale; `keep_ratio` / `mass` then apply to the region only.
PADDINGS = ("keep", "drop")
# Which windows are sparsified.
#   all:   every window.
#   whole: only a window that holds a whole input (a file or clip of up to 30 s, a batched chunk);
#          the windows of a longer recording run dense. The sequential mode decodes a recording's
#          last window with timestamps after a seek, where a trimmed window that leaves its last
#          segment open is re-run dense by the guard (guard.py): "whole" keeps the trim where
#          Whisper wastes most (short clips are mostly padding) and long recordings as dense.
SCOPES = ("all", "whole")
ENCODER_FRAMES_PER_SECOND = 50
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
    padding: str = "keep"  # trailing padding: "keep" (selected over) or "drop" (removed wholesale)
    speech_floor: float = 0.0  # padding="drop": the region covers at least this many seconds (+ margin)
    speech_margin: float = 1.28  # padding="drop": seconds kept past the end of the content
    onset_keep: float = 0.0  # seconds from the speech onset kept in full (attention strategies)
    scope: str = "all"  # which windows are sparsified: "all", or "whole" inputs only (SCOPES)

    def __post_init__(self) -> None:
        if not isinstance(self.layer, int) or isinstance(self.layer, bool) or self.layer < 1:
            raise ConfigError(f"layer must be an integer >= 1 (1-based encoder block), got {self.layer!r}")
        if (self.keep_ratio is None) == (self.mass is None):
            raise ConfigError("give exactly one of keep_ratio (fixed) or mass (adaptive)")
        if self.keep_ratio is not None and not (0.0 < self.keep_ratio <= 1.0):
            raise ConfigError(f"keep_ratio must be in (0, 1], got {self.keep_ratio!r}")
        if self.mass is not None and not (0.0 < self.mass <= 1.0):
            raise ConfigError(f"mass must be in (0, 1], got {self.mass!r}")
        if not (0.0 < self.min_keep <= self.max_keep <= 1.0):
            raise ConfigError(f"need 0 < min_keep <= max_keep <= 1, got {self.min_keep!r}, {self.max_keep!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.scoring not in SCORINGS:
            raise ConfigError(f"scoring must be one of {', '.join(SCORINGS)}, got {self.scoring!r}")
        if not (1 <= self.query_stride <= MAX_QUERY_STRIDE):
            raise ConfigError(f"query_stride must be in 1..{MAX_QUERY_STRIDE}, got {self.query_stride!r}")
        if not (0.0 <= self.uniform_floor <= 1.0):
            raise ConfigError(f"uniform_floor must be in [0, 1], got {self.uniform_floor!r}")
        if self.padding not in PADDINGS:
            raise ConfigError(f"padding must be one of {', '.join(PADDINGS)}, got {self.padding!r}")
        if self.scope not in SCOPES:
            raise ConfigError(f"scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        if not (0.0 <= self.speech_floor <= 30.0) or not (0.0 <= self.speech_margin <= 30.0):
            raise ConfigError(f"speech_floor and speech_margin must be seconds in [0, 30], got "
                             f"{self.speech_floor!r}, {self.speech_margin!r}")
        if not (0.0 <= self.onset_keep <= 30.0):
            raise ConfigError(f"onset_keep must be seconds in [0, 30], got {self.onset_keep!r}")
        if self.onset_keep and self.strategy in ("uniform", "truncate"):
            raise ConfigError(f"onset_keep ranks frames; strategy {self.strategy!r} keeps a fixed pattern")
        if self.mass is not None and self.strategy in ("uniform", "truncate"):
            raise ConfigError(f"adaptive mass needs attention scores; strategy {self.strategy!r} has none")

    @property
    def adaptive(self) -> bool:
        return self.mass is not None

    @property
    def needs_audio(self) -> bool:
        """The selection reads the window's features (speech bounds): dropped padding, onset_keep."""
        return self.padding == "drop" or self.onset_keep > 0

    @property
    def per_input(self) -> bool:
        """Kept counts differ per window (adaptive mass, or padding dropped by audio length)."""
        return self.adaptive or self.padding == "drop"

    def region_frames(self, content_frames: int, n_frames: int) -> int:
        """padding="drop": frames of the speech region, max(floor, content) + margin (the padding
        trim of whisper.cpp's audio_ctx / transcribe.cpp: first max(10 s, duration) + 1.28 s)."""
        if self.padding == "keep":
            return n_frames
        margin = int(round(self.speech_margin * ENCODER_FRAMES_PER_SECOND))
        floor = int(round(self.speech_floor * ENCODER_FRAMES_PER_SECOND))
        return max(1, min(n_frames, max(floor, content_frames) + margin))

    @property
    def uses_attention(self) -> bool:
        return self.strategy not in ("uniform", "truncate")

    def check_model(self, n_layers: int) -> None:
        """Raise a clear error when the layer does not exist in a model with `n_layers` blocks."""
        if self.layer > n_layers:
            raise ConfigError(f"layer {self.layer} is outside this encoder's 1..{n_layers} blocks")

    def keep_count(self, n_frames: int) -> int:
        """Frames kept by a fixed ratio: round(keep_ratio * T), at least one."""
        if self.keep_ratio is None:
            raise ConfigError("an adaptive config has no fixed keep count")
        return max(1, min(n_frames, int(math.floor(self.keep_ratio * n_frames + 0.5))))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PruneConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown prune config keys: {', '.join(sorted(unknown))}")
        return cls(**data)

    def with_(self, **changes: Any) -> "PruneConfig":
        return replace(self, **changes)

    @classmethod
    def parse(cls, text: str) -> "PruneConfig":
        """The config a text names (the inverse of `format`): see `GRAMMAR`."""
        return _parse(text)

    def format(self) -> str:
        """One canonical text form, e.g. `coverage@4+merge L1 k0.4`; `parse` reads it back exactly.

        Core fields in short tokens, every other field only where it differs from its default,
        as `name=value` (so fields added later need no change here).
        """
        head = self.strategy + (f"@{self.query_stride}" if self.query_stride != 1 else "")
        head += "".join(f"+{name}" for name in _flag_fields() if getattr(self, name))
        amount = f"k{self.keep_ratio!r}" if self.keep_ratio is not None else f"m{self.mass!r}"
        extra = [f"{f.name}={_format_value(getattr(self, f.name))}" for f in fields(self)
                 if f.name not in _SHORT and f.name not in _flag_fields() and getattr(self, f.name) != f.default]
        return " ".join([head, f"L{self.layer}", amount, *extra])

    def __str__(self) -> str:
        return self.format()


class _Default:
    """Marks a prune config nobody named: the model's shipped default, or an export folder's own."""

    def __repr__(self) -> str:
        return "DEFAULT_PRUNE"


DEFAULT_PRUNE = _Default()

GRAMMAR = "STRATEGY[@QUERY_STRIDE][+merge] L<layer> (k<keep_ratio> | m<mass>) [field=value ...], or dense"
_SHORT = ("strategy", "query_stride", "layer", "keep_ratio", "mass")


def _flag_fields() -> tuple[str, ...]:
    """Boolean fields: written `+name` after the strategy (today: merge)."""
    hints = typing.get_type_hints(PruneConfig)
    return tuple(f.name for f in fields(PruneConfig) if hints[f.name] is bool)


def _format_value(value: Any) -> str:
    return "none" if value is None else repr(value) if isinstance(value, float) else str(value)


def _field_value(name: str, text: str) -> Any:
    """`text` as the type of PruneConfig field `name` (int, float, str, bool, or that or None)."""
    hint = typing.get_type_hints(PruneConfig)[name]
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
    if text == "none" and type(None) in typing.get_args(hint):
        return None
    kind = kinds[0]
    if kind is bool:
        if text not in ("true", "false"):
            raise ConfigError(f"{name} is true or false, not {text!r}")
        return text == "true"
    return kind(text)


def _parse(text: str) -> PruneConfig:
    values: dict[str, Any] = {}
    names = {f.name for f in fields(PruneConfig)}
    try:
        for token in text.split():
            if "=" in token:
                name, value = token.split("=", 1)
                if name not in names:
                    raise ConfigError(f"unknown field {name!r}")
                values[name] = _field_value(name, value)
            elif re.fullmatch(r"L\d+", token):
                values["layer"] = int(token[1:])
            elif re.fullmatch(r"[km][0-9.eE+-]+", token):
                values["keep_ratio" if token[0] == "k" else "mass"] = float(token[1:])
            else:
                values.update(parse_strategy(token))
        if "layer" not in values or ("keep_ratio" not in values and "mass" not in values):
            raise ConfigError("needs L<layer> and k<keep_ratio> or m<mass>")
        if "mass" in values and "keep_ratio" not in values:
            values["keep_ratio"] = None
        return PruneConfig(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"prune config {text!r}: {error} (grammar: {GRAMMAR})") from None


def parse_strategy(token: str) -> dict[str, Any]:
    """The strategy token of the grammar: `coverage@4+merge` -> strategy, query_stride, merge."""
    name, *flags = token.split("+")
    values: dict[str, Any] = {}
    if "@" in name:
        name, stride = name.split("@", 1)
        if not stride.isdigit():
            raise ConfigError(f"query stride in {token!r} is not an integer")
        values["query_stride"] = int(stride)
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy or token {name!r} (strategies: {', '.join(STRATEGIES)})")
    for flag in flags:
        if flag not in _flag_fields():
            raise ConfigError(f"unknown flag +{flag} (flags: {', '.join('+' + f for f in _flag_fields())})")
        values[flag] = True
    return {"strategy": name, **values}


def parse_prune(text: str) -> PruneConfig | None:
    """`dense` -> None, else `PruneConfig.parse(text)`."""
    return None if text.strip() == "dense" else PruneConfig.parse(text)


def format_prune(config: PruneConfig | None) -> str:
    """`dense` for None, else `config.format()`: the one text form of CLI, search, manifests, reports."""
    return "dense" if config is None else config.format()
