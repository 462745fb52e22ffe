"""Shipped default prune configs, chosen per model by the joint search (docs/results.md)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from whisper_eas.config import PruneConfig


@lru_cache(maxsize=1)
def _shipped() -> dict[str, dict]:
    text = resources.files("whisper_eas").joinpath("data/shipped_configs.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def shipped_config(model: str | Path) -> PruneConfig | None:
    """The shipped config for an embedded model name (or a folder whose name matches); None for a
    model that ships dense (no config held on speech-val: tiny.en) or that has no entry."""
    name = str(model)
    data = _shipped().get(name) or _shipped().get(Path(name).name)
    return PruneConfig.from_dict(data) if data else None


def shipped_models() -> list[str]:
    return list(_shipped())
