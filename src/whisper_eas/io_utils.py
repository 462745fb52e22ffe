"""Atomic file output: write to a temporary file (or folder) beside the target, then rename over it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (same filesystem), else copy it."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def publish_folder(folder: Path, files: dict[str, Path], texts: dict[str, str] | None = None) -> None:
    """Replace `folder` by one holding `files` (name -> source, linked or copied) and `texts`.

    Filled as a sibling temporary folder and renamed into place, so a cache folder is never seen
    half written.
    """
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        link_or_copy(src, tmp / name)
    for name, text in (texts or {}).items():
        (tmp / name).write_text(text)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
