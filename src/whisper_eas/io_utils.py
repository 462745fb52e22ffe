"""Atomic file output: write to a temporary file (or folder) beside the target, then rename over it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def sha256_file(path: str | Path, chunk: int = 8 << 20) -> str:
    """The file's sha256, read in chunks (graphs are up to gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_OWNER}.", suffix=".tmp", dir=path.parent)
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


def build_folder(folder: Path, build: Callable[[Path], None], usable: Callable[[Path], bool]) -> None:
    """Fill `folder` with `build(private)` in a private sibling folder, then rename it into place.

    A process that loses the race to another one building the same folder drops its copy and keeps
    the winner's (when `usable`); a leftover that is not `usable` is replaced. Nothing is ever seen
    half built."""
    private = folder.with_name(f".{folder.name}.{os.getpid()}")
    shutil.rmtree(private, ignore_errors=True)
    try:
        build(private)
        private.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists() and not usable(folder):  # left by an older version: replace it
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(private, folder)  # atomic; fails if another process published first
        except OSError:
            if not usable(folder):
                raise
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]


_OWNER = f"{_host_tag()}-{os.getpid()}"  # in each temporary's name: which process on which host writes it
_TMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # what atomic_write_bytes's mkstemp names look like
_OWNED_NAME = re.compile(r"^\..+\.([0-9a-f]{6})-(\d+)\.[A-Za-z0-9_]{8}\.tmp$")


def _writer_gone(name: str) -> bool:
    """The temporary names a process on this host that no longer runs (killed: SIGKILL leaves it)."""
    match = _OWNED_NAME.match(name)
    if match is None or match.group(1) != _host_tag() or int(match.group(2)) == os.getpid():
        return False
    try:
        os.kill(int(match.group(2)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, OSError):  # another user's process, or not a pid at all
        return False
    return False


def clean_orphans(folder: str | Path, older_than_s: float = 600.0) -> list[Path]:
    """Remove temporary files `atomic_write_bytes` left when killed mid-write.

    Each names its writer (host and pid): one whose process on this host is gone is removed at
    once, so a rerun right after a kill starts clean. Others (a writer on another host, names from
    before) go once older than `older_than_s`: a write holds its file for milliseconds, and a
    concurrent run into the same folder keeps its fresh ones.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed, cutoff = [], time.time() - older_than_s
    for path in folder.rglob(".*.tmp"):
        try:
            if _TMP_NAME.match(path.name) and path.is_file() and (
                    _writer_gone(path.name) or path.stat().st_mtime < cutoff):
                path.unlink()
                removed.append(path)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    return removed


def check_writable(folder: str | Path) -> None:
    """Create `folder` if needed and prove a file can be written there; `OSError` naming it if not."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".whisper-eas-probe.", suffix=".tmp"):
            pass
    except OSError as error:
        raise PermissionError(f"{folder}: output folder is not writable ({error.strerror or error})") from None
