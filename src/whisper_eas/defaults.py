"""Shipped default prune configs, chosen per model by the accuracy protocol (docs/results.md section 0)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from whisper_eas.config import PruneConfig

GPU_TABLE = "gpu"  # defaults on a CUDA device, where they differ from the CPU's (shipped_configs.json)
BATCHED_TABLE = "batched"  # CPU defaults of batched long-form (`--batched`), where they differ
SERVE_TABLE = "serve"  # CPU defaults of `whisper-eas serve` (mostly short requests), where they differ
TABLES = (GPU_TABLE, BATCHED_TABLE, SERVE_TABLE)


@lru_cache(maxsize=1)
def _table() -> dict[str, dict]:
    text = resources.files("whisper_eas").joinpath("data/shipped_configs.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def _entry(table: dict, model: str | Path) -> tuple[bool, dict | None]:
    """(found, entry) for an embedded model name or a folder whose name matches one."""
    name = str(model)
    for key in (name, Path(name).name):
        if key in table:
            return True, table[key]
    return False, None


def shipped_config(model: str | Path, device: str = "cpu", batched: bool = False,
                   serve: bool = False) -> PruneConfig | None:
    """The shipped config for an embedded model name (or a folder whose name matches) on `device`;
    None for a model that ships dense there or that has no entry.

    On a CUDA device the `gpu` table wins where it names the model: the CUDA-graph runner and
    TensorRT engines run one frame count per batch, so a padding trim (a per-window count) is not
    a GPU default. On a CPU in batched long-form the `batched` table wins where it names the model:
    there a chunk's trimmed padding costs no guard re-run (chunks have no timestamps), whereas in
    the sequential mode it made tiny.en slower (shipped_configs.json). `serve`: the service's table,
    whose requests are mostly short clips, where the padding trim pays."""
    table = (GPU_TABLE if str(device).startswith("cuda") else BATCHED_TABLE if batched
             else SERVE_TABLE if serve else None)
    if table is not None:
        found, data = _entry(_table().get(table, {}), model)
        if found:
            return PruneConfig.from_dict(data) if data else None
    _, data = _entry(_table(), model)
    return PruneConfig.from_dict(data) if data else None


def shipped_models() -> list[str]:
    return [name for name in _table() if name not in TABLES]
