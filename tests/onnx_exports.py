"""tiny.en exported once per test session (dense and layer 1 keep 0.5), shared by the ONNX tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from whisper_eas.config import PruneConfig

SPARSE = PruneConfig(layer=1, keep_ratio=0.5)
_EXPORTS: dict[str, Path] = {}


def exported(tmp_path_factory, model, config: PruneConfig | None) -> Path:
    """Export folder for `config` (None: dense); the decoder graphs come from the model's cache."""
    from whisper_eas.exporter.export import export_model

    key = config.format().replace(" ", "-") if config else "dense"
    if key not in _EXPORTS:
        out = tmp_path_factory.mktemp(f"onnx-{key}")
        export_model("tiny.en", config, out, hf_model=model)
        _EXPORTS[key] = out
    return _EXPORTS[key]


def linked_copy(src: Path, dst: Path, copy: tuple[str, ...] = ("manifest.json",)) -> Path:
    """A copy of an export folder: `copy` files are real copies (to edit), the rest hard links (a
    symlink leading out of the folder is refused by the manifest check, as it should be)."""
    dst.mkdir(parents=True)
    for path in src.iterdir():
        if path.name in copy:
            shutil.copy2(path, dst / path.name)
        else:
            try:
                os.link(path, dst / path.name)
            except OSError:  # another filesystem
                shutil.copy2(path, dst / path.name)
    return dst
