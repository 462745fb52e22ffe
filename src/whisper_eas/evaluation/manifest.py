"""Evaluation manifests: TSV with header `id path duration_s text`, paths relative to the file."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from whisper_eas.errors import WhisperEasError

REQUIRED_COLUMNS = ("id", "path", "duration_s", "text")


class ManifestError(WhisperEasError, ValueError):
    """A manifest that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Utterance:
    id: str
    path: Path  # absolute
    duration_s: float
    text: str


def read_manifest(path: str | Path, limit: int | None = None) -> list[Utterance]:
    path = Path(path)
    if limit is not None and limit < 1:
        raise ManifestError(f"{path}: limit must be >= 1, got {limit}")
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    raw = path.read_bytes()
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ManifestError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[error.start]:02x}); save the manifest "
                            "as UTF-8") from None
    if not lines:
        raise ManifestError(f"{path}: empty manifest (expected a header: {' '.join(REQUIRED_COLUMNS)})")
    header = lines[0].split("\t")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(f"{path}:1: header lacks column(s) {', '.join(missing)} (tab-separated)")
    col = {name: header.index(name) for name in REQUIRED_COLUMNS}
    rows: list[Utterance] = []
    for number, line in enumerate(csv.reader(lines[1:], delimiter="\t", quoting=csv.QUOTE_NONE), start=2):
        if not line or all(not cell.strip() for cell in line):
            continue
        if len(line) != len(header):
            raise ManifestError(f"{path}:{number}: expected {len(header)} tab-separated fields, got {len(line)}")
        try:
            duration = float(line[col["duration_s"]])
        except ValueError:
            raise ManifestError(f"{path}:{number}: duration_s {line[col['duration_s']]!r} is not a number") from None
        if not line[col["id"]].strip() or not line[col["path"]].strip():
            raise ManifestError(f"{path}:{number}: empty id or path")
        rows.append(Utterance(line[col["id"]], (path.parent / line[col["path"]]).resolve(), duration, line[col["text"]]))
        if limit is not None and len(rows) >= limit:
            break
    return rows
