"""The `whisper_eas::AttentivePrune` plugin's attributes: one schema for the ONNX node and TensorRT.

The ONNX node carries `plugin_attributes()` (the prune config plus `n_frames`, `keep_count`) as
node attributes, and the TensorRT ONNX parser hands exactly the attributes the plugin registered to
its creator. A plugin's attribute set is fixed, so the two optional entries get neutral fillers
(`keep_ratio = 0.0` / `keep_count = 0` for adaptive configs, `mass = 0.0` for fixed ones) and
`merge` travels as an int (ONNX has no bool attribute). No tensorrt or onnx import here: the
exporter, the plugin and the tests share this module.
"""

from __future__ import annotations

import math
from typing import Any

from whisper_eas.config import PruneConfig
from whisper_eas.errors import ConfigError
from whisper_eas.exporter.graph_specs import PRUNE_PLUGIN_DOMAIN, PRUNE_PLUGIN_OP, PRUNE_PLUGIN_VERSION, ModelDims

PLUGIN_ID = f"{PRUNE_PLUGIN_DOMAIN}::{PRUNE_PLUGIN_OP}"  # tensorrt.plugin's "{namespace}::{name}"
PLUGIN_VERSION = str(PRUNE_PLUGIN_VERSION)  # QDP plugins register as version "1"

# Every attribute the plugin registers, with its Python type (the order is the register signature's).
ATTRIBUTE_TYPES: dict[str, type] = {
    "layer": int,
    "keep_ratio": float,
    "strategy": str,
    "scoring": str,
    "mass": float,
    "min_keep": float,
    "max_keep": float,
    "query_stride": int,
    "merge": int,
    "uniform_floor": float,
    "n_frames": int,
    "keep_count": int,
}
_FILLERS: dict[str, Any] = {"keep_ratio": 0.0, "mass": 0.0, "keep_count": 0}
PLUGIN_STRATEGIES = ("attentive", "coverage")  # the ones that rank frames by attention scores
# Fields that select from the window's audio (its speech bounds): the plugin sees hidden states only,
# so it runs configs that leave them at their defaults, where they change nothing.
AUDIO_FIELDS = ("padding", "speech_floor", "speech_margin", "onset_keep")
HOST_FIELDS = ("scope",)  # which windows are pruned: decided by the host, not inside the graph


def plugin_applies(config: PruneConfig | None) -> bool:
    """The plugin replaces the prune graph of configs that rank frames by score.

    `uniform`/`truncate` keep fixed frame positions: their standard-op graph is a constant-index
    Gather that TensorRT runs as it is, so they need no plugin.
    """
    return config is not None and config.strategy in PLUGIN_STRATEGIES


def plugin_attributes(config: PruneConfig, dims: ModelDims) -> dict[str, Any]:
    """What a single-node plugin form needs to reproduce the selection (its node attributes)."""
    if config.needs_audio:
        raise ConfigError(f"{config.format()}: selects from the window's audio (padding=drop, onset_keep), "
                          "which the prune plugin does not see; run it on the PyTorch backend")
    attributes: dict[str, Any] = {k: v for k, v in config.to_dict().items()
                                  if v is not None and k not in AUDIO_FIELDS + HOST_FIELDS}
    attributes["n_frames"] = dims.n_frames
    if config.keep_ratio is not None:
        attributes["keep_count"] = config.keep_count(dims.n_frames)
    return attributes


def node_attributes(config: PruneConfig, dims: ModelDims) -> dict[str, Any]:
    """`plugin_attributes()` completed to the plugin's fixed attribute set (ints, floats, strings)."""
    if not plugin_applies(config):
        raise ConfigError(f"{PLUGIN_ID} handles strategies {', '.join(PLUGIN_STRATEGIES)}; "
                         f"{config.strategy!r} exports as the standard-op prune graph")
    attributes = {**_FILLERS, **plugin_attributes(config, dims)}
    attributes["merge"] = int(attributes["merge"])
    unknown = set(attributes) - set(ATTRIBUTE_TYPES)
    if unknown:
        raise ConfigError(f"plugin_attributes() has entries the plugin does not register: {sorted(unknown)}")
    return {name: kind(attributes[name]) for name, kind in ATTRIBUTE_TYPES.items()}


def _decimal(value: float) -> float:
    """The short decimal an ONNX float32 attribute came from (0.3f -> 0.3, not 0.30000001192...).

    Config values have a few significant digits; 6 digits round-trip any of them through float32,
    so the plugin selects with the same thresholds as the PyTorch reference.
    """
    return float(f"{float(value):.6g}")


def config_from_attributes(attributes: dict[str, Any]) -> tuple[PruneConfig, int]:
    """(prune config, n_frames) back from plugin attributes; the inverse of `node_attributes`."""
    values = {name: kind(attributes[name]) if kind is not float else _decimal(attributes[name])
              for name, kind in ATTRIBUTE_TYPES.items()}
    adaptive = values["keep_count"] == 0
    config = PruneConfig(
        layer=values["layer"],
        keep_ratio=None if adaptive else values["keep_ratio"],
        mass=values["mass"] if adaptive else None,
        strategy=values["strategy"],
        scoring=values["scoring"],
        min_keep=values["min_keep"],
        max_keep=values["max_keep"],
        query_stride=values["query_stride"],
        merge=bool(values["merge"]),
        uniform_floor=values["uniform_floor"],
    )
    n_frames = values["n_frames"]
    if not adaptive and config.keep_count(n_frames) != values["keep_count"]:
        raise ConfigError(f"{PLUGIN_ID}: keep_count {values['keep_count']} does not follow from keep_ratio "
                         f"{config.keep_ratio} over {n_frames} frames")
    return config, n_frames


def count_bounds(config: PruneConfig, n_frames: int) -> tuple[int, int]:
    """(fewest, most) frames a config keeps: K and K when fixed, the adaptive clamp otherwise.

    The adaptive bounds are `selection.adaptive_keep_counts`' clamp: the upper one is the plugin's
    data-dependent output bound and the encoder tail's profile range.
    """
    if not config.adaptive:
        k = config.keep_count(n_frames)
        return k, k
    low = max(1, int(round(config.min_keep * n_frames)))
    return low, max(low, int(round(config.max_keep * n_frames)))


def optimum_count(config: PruneConfig, n_frames: int) -> int:
    """The kept length TensorRT tunes for: K, or the middle of the adaptive range."""
    low, high = count_bounds(config, n_frames)
    return int(math.ceil((low + high) / 2))
