"""The one table of defaults: prune config and precision per embedded model, device and mode.

`data/defaults.json` holds it; `default_for` is the one reader, and every command that picks a
default (trt-transcribe, its `--batched` mode, serve, eval, export, transcribe-dataset, bench) goes
through it, so `whisper-eas defaults` prints exactly what they run. How each entry was chosen, with
its speech-val figure, is in the table itself (docs/results.md section 0 has the protocol).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from whisper_eas.config import PruneConfig

MODES = ("sequential", "batched", "serve")
DEVICES = ("cpu", "cuda")
DENSE = "dense"
FOLDER_PRECISION = "fp32"  # a checkpoint folder the table does not name: dense float32 graphs


@dataclass(frozen=True)
class Default:
    """One row: what a command runs for `model` on `device` in `mode` when no flag says otherwise."""

    model: str
    device: str  # cpu | cuda
    mode: str  # sequential | batched | serve
    config: PruneConfig | None  # None: dense
    precision: str  # exported graphs' precision on a CPU (exporter.quantize.PRECISIONS); fp16 on CUDA
    why: str
    speech_val: str  # the accuracy that justified it, on the set nobody tuned on


@lru_cache(maxsize=1)
def _table() -> dict[str, dict]:
    text = resources.files("whisper_eas").joinpath("data/defaults.json").read_text()
    return json.loads(text)["defaults"]


def device_kind(device: str) -> str:
    """`cuda:1` -> `cuda`; anything else runs on the CPU."""
    return "cuda" if str(device).startswith("cuda") else "cpu"


def mode_of(batched: bool = False, serve: bool = False) -> str:
    return "batched" if batched else "serve" if serve else "sequential"


def _model_key(model: str | Path) -> str | None:
    """The table's name for an embedded model name or a folder whose name matches one."""
    name = str(model)
    for key in (name, Path(name).name):
        if key in _table():
            return key
    return None


def default_for(model: str | Path, device: str = "cpu", mode: str = "sequential") -> Default | None:
    """The table's row for `model` (an embedded name, or a folder named like one); None when the
    table does not name the model (it then runs dense, float32 on a CPU)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    key = _model_key(model)
    if key is None:
        return None
    kind = device_kind(device)
    row = _table()[key][kind][mode]
    config = None if row["config"] == DENSE else PruneConfig.parse(row["config"])
    return Default(key, kind, mode, config, row["precision"], row["why"], row["speech_val"])


def shipped_config(model: str | Path, device: str = "cpu", batched: bool = False,
                   serve: bool = False) -> PruneConfig | None:
    """The default prune config (None: dense) for `model` on `device` in that mode."""
    row = default_for(model, device, mode_of(batched, serve))
    return row.config if row is not None else None


def default_precision(model: str | Path, batched: bool = False, serve: bool = False) -> str:
    """The precision of the CPU graphs the default path exports for `model` in that mode."""
    row = default_for(model, "cpu", mode_of(batched, serve))
    return row.precision if row is not None else FOLDER_PRECISION


def shipped_models() -> list[str]:
    return list(_table())


def table() -> list[Default]:
    """Every row, model by model, CPU before CUDA, modes in `MODES` order."""
    return [row for model in shipped_models() for device in DEVICES for mode in MODES
            if (row := default_for(model, device, mode)) is not None]
