"""Turn FILE_OR_DIR arguments into input files and collision-free output names."""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from whisper_eas.audio import AUDIO_EXTENSIONS


@dataclass(frozen=True)
class InputFile:
    path: Path
    name: str  # output name without extension: the stem, or a relative path for directory inputs
    renamed: bool = False  # changed from the plain stem because another input would have the same name


def _walk(folder: Path) -> list[Path]:
    """Audio files under `folder` by extension, sorted, hidden files and folders left out."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
            found.append(path)
    return found


def discover(arguments: list[Path]) -> list[InputFile]:
    """Named files as given (a missing one fails later, with the others still transcribed);
    folders expanded recursively to their audio files. The same file named twice counts once."""
    candidates: list[tuple[Path, Path]] = []  # (file, its output name without extension)
    for argument in arguments:
        if argument.is_dir():
            candidates += [(p, p.relative_to(argument).with_suffix("")) for p in _walk(argument)]
        else:
            candidates.append((argument, Path(argument.name).with_suffix("")))
    seen, unique = set(), []
    for path, name in candidates:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((path, name))
    return _disambiguate(unique)


def _disambiguate(candidates: list[tuple[Path, Path]]) -> list[InputFile]:
    """x.wav and x.mp3 (or two folders' x.flac) would overwrite each other's outputs: keep the
    extension in the name, and where that still collides add a short hash of the input's own
    absolute path (x-3fa2b1c0). A name depends on the input alone, never on the order or position
    of the others, so a rerun with the inputs reordered finds each file's own outputs (issue 28).
    `InputFile.renamed` says which were changed."""
    counts = Counter(name.as_posix() for _, name in candidates)
    named = [(path, name.as_posix() if counts[name.as_posix()] == 1 else f"{name.as_posix()}{path.suffix}")
             for path, name in candidates]
    counts = Counter(name for _, name in named)
    out = []
    for (path, name), (_, plain) in zip(named, candidates):
        if counts[name] > 1:
            name = f"{plain.as_posix()}-{path_tag(path)}"
        out.append(InputFile(path, name, renamed=name != plain.as_posix()))
    return out


def path_tag(path: Path, length: int = 8) -> str:
    """A short stable hash of the absolute path (symlinks resolved, as duplicates are found); a URI
    (s3://..., which `Path` writes with one slash) as it is."""
    where = path if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:/", path.as_posix()) else path.resolve()
    return hashlib.sha256(os.fsencode(where)).hexdigest()[:length]
