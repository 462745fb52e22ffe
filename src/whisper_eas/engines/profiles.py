"""How engines are built (`EngineConfig`) and the optimization profile of every graph input.

Profiles are derived from `graph_specs`: each named dynamic axis gets one (min, opt, max) range
and every input shape is its spec with the ranges substituted, so a renamed axis or a new input
cannot drift between the exporter and the engines.

    batch   encoder graphs and decoder_cross: windows per call; decoder_step: windows x beams
    frames  encoder_tail input and decoder frames: the kept count (adaptive: its whole range) up
            to all frames, because the quality guard re-runs a window dense on the same engines
    new     tokens fed in one decoder step: 1, or a whole prompt on the first step
    wanted  positions of a step whose logits are returned: 1, 2 on a prompt step (its last token and
            the start token), up to the whole prompt
    past    cached positions before the step
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from whisper_eas.config import PruneConfig
from whisper_eas.decoding import N_TEXT_CTX
from whisper_eas.errors import ConfigError
from whisper_eas.exporter.graph_specs import GraphSpec, ModelDims
from whisper_eas.plugins.attributes import count_bounds, optimum_count

Range = tuple[int, int, int]  # min, opt, max
Shapes = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class EngineConfig:
    """Build settings shared by every engine of an export folder."""

    max_batch: int = 16  # windows per encoder call
    opt_batch: int = 8  # the batch TensorRT tunes its kernels for
    max_beam: int = 5  # decoder rows per window (beam search)
    max_prompt: int = N_TEXT_CTX // 2 + 8  # tokens of a first decoder step: previous text + start sequence
    opt_past: int = 32  # cached positions TensorRT tunes the decoder step for
    fp16: bool = True
    prune_plugin: bool = True  # the AttentivePrune plugin for scored configs, else the standard-op graph
    plugin_aot: bool = False  # the plugin's Triton kernel (fixed counts) instead of its Python implementation

    def __post_init__(self) -> None:
        if not (1 <= self.opt_batch <= self.max_batch):
            raise ConfigError(f"need 1 <= opt_batch <= max_batch, got {self.opt_batch}, {self.max_batch}")
        if self.max_beam < 1:
            raise ConfigError(f"max_beam must be >= 1, got {self.max_beam}")
        if not (1 <= self.max_prompt < N_TEXT_CTX):
            raise ConfigError(f"max_prompt must be in 1..{N_TEXT_CTX - 1}, got {self.max_prompt}")
        if not (0 <= self.opt_past < N_TEXT_CTX):
            raise ConfigError(f"opt_past must be in 0..{N_TEXT_CTX - 1}, got {self.opt_past}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def axis_ranges(
    dims: ModelDims, config: PruneConfig | None, engine: EngineConfig, batch: int | str
) -> dict[str, dict[str, Range]]:
    """Per graph, the (min, opt, max) of each named axis. A static export batch pins every batch axis."""
    if isinstance(batch, int):
        windows = rows = (batch, batch, batch)
    else:
        windows = (1, engine.opt_batch, engine.max_batch)
        rows = (1, engine.opt_batch, engine.max_batch * engine.max_beam)
    n = dims.n_frames
    frames = (count_bounds(config, n)[0], optimum_count(config, n), n) if config is not None else (n, n, n)
    positions = dims.max_target_positions
    encoder = {"batch": windows, "frames": frames}
    return {
        "encoder_head": encoder,
        "prune": encoder,
        "encoder_tail": encoder,
        "decoder_cross": encoder,
        "decoder_step": {"batch": rows, "frames": frames, "new": (1, 1, engine.max_prompt),
                         "wanted": (1, 1, engine.max_prompt),
                         "past": (0, min(engine.opt_past, positions - 1), positions - 1)},
    }


def profile_shapes(spec: GraphSpec, ranges: dict[str, Range]) -> dict[str, Shapes]:
    """(min, opt, max) shape of every input with a dynamic axis, in input order."""
    profile = {}
    for tensor in spec.inputs:
        if not tensor.dynamic_axes():
            continue
        missing = set(tensor.dynamic_axes().values()) - set(ranges)
        if missing:
            raise ConfigError(f"{spec.file}: no profile range for axis {sorted(missing)} of input {tensor.name}")
        profile[tensor.name] = tuple(
            tuple(ranges[d][i] if isinstance(d, str) else d for d in tensor.shape) for i in range(3)
        )
    return profile
