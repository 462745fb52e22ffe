"""sha256 checks remembered by file identity, so an unchanged export folder is not read twice.

Loading an export folder named with `--engine-dir` checks every graph file against the sha256 in
its manifest: ~490 MB of hashing for tiny.en int8-dec, 0.4 s of CPU at every load. A file whose size,
modification time (ns) and inode are those it had when its hash last matched has not been written
since, so its hash is not computed again (the rule `make` and git's index use). Any write to a file
changes its mtime, so an edited or re-exported graph is hashed and caught as before. The stamps
live in the model cache, one small JSON per folder, never inside the export folder (which may be
read-only or shared); a stamp file that cannot be read or written only costs the hashing.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from whisper_eas.io_utils import atomic_write_json, sha256_file


class HashStamps:
    """The remembered sha256 matches of one folder's files."""

    def __init__(self, folder: Path):
        self.folder = folder.resolve()
        self.path = _stamp_file(self.folder)
        self.stamps: dict[str, list] = self._read()
        self._changed = False

    def matches(self, file: Path, digest: str) -> bool:
        """True when `file`'s sha256 is `digest`: from its stamp when the file is unchanged since it
        last matched, else by hashing it (and stamping it when it matches)."""
        stat = file.stat()
        identity = [stat.st_size, stat.st_mtime_ns, stat.st_ino, digest]
        resolved = file.resolve()
        key = str(resolved.relative_to(self.folder)) if resolved.is_relative_to(self.folder) else str(resolved)
        if self.stamps.get(key) == identity:
            return True
        if sha256_file(file) != digest:
            self.stamps.pop(key, None)
            return False
        self.stamps[key], self._changed = identity, True
        return True

    def save(self) -> None:
        if not self._changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, {"folder": str(self.folder), "files": self.stamps})
        except OSError:
            pass  # a read-only cache: the next load hashes again
        self._changed = False

    def _read(self) -> dict[str, list]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("folder") != str(self.folder) or not isinstance(data.get("files"), dict):
            return {}
        return data["files"]


def _stamp_file(folder: Path) -> Path:
    from whisper_eas.checkpoints.registry import cache_home

    name = hashlib.sha256(os.fsencode(folder)).hexdigest()[:24]
    return cache_home() / "hash-stamps" / f"{name}.json"
