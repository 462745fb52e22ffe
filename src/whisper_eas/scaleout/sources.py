"""What a dataset job reads: a folder, a manifest TSV or a table of paths, local or on any
filesystem pyarrow opens (s3://, gs://, hdfs://, abfs://).

Only listing lives here; output names are given by the CLI with the same function `trt-transcribe`
uses, so a file gets the same output name whichever command transcribed it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from whisper_eas.audio import AUDIO_EXTENSIONS
from whisper_eas.errors import WhisperEasError

# Table formats by suffix; a .tsv is a manifest (`trt-transcribe`'s and `eval`'s tab-separated files).
TABLE_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv",
                 ".jsonl": "json", ".ndjson": "json", ".json": "json"}
PATH_COLUMN = "path"


class SourceError(WhisperEasError, ValueError):
    """An input that cannot be listed; the message names it and the problem."""


@dataclass(frozen=True)
class Listing:
    """Audio files to transcribe: local paths or URIs, and the folder they were found under (if any)."""

    paths: list[str]
    folder: str | None = None  # paths are under this folder: their names keep the relative path

    def relative(self, path: str) -> PurePosixPath:
        assert self.folder is not None
        return PurePosixPath(path).relative_to(PurePosixPath(self.folder))


def is_uri(text: str) -> bool:
    return "://" in text and not Path(text).exists()


def filesystem(uri: str):
    """(pyarrow FileSystem, path inside it) for a URI or a local path."""
    from pyarrow import fs

    if not is_uri(uri):
        return fs.LocalFileSystem(), str(Path(uri).absolute())
    try:
        return fs.FileSystem.from_uri(uri)
    except Exception as error:  # pyarrow raises ArrowInvalid/OSError for unknown schemes or credentials
        raise SourceError(f"{uri}: cannot open this filesystem ({error})") from None


def list_inputs(spec: str) -> Listing:
    """A folder's audio files (recursively, hidden entries left out) or a table's `path` column."""
    from pyarrow import fs

    handle, inner = filesystem(spec)
    info = handle.get_file_info(inner)
    if info.type == fs.FileType.NotFound:
        raise SourceError(f"{spec}: no such file or folder")
    if info.type == fs.FileType.Directory:
        return _list_folder(spec, handle, inner)
    suffix = PurePosixPath(inner).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise SourceError(f"{spec}: not a folder or a table of paths (expected "
                          f"{', '.join(sorted(TABLE_FORMATS))})")
    return Listing(_read_paths(spec, handle, inner, TABLE_FORMATS[suffix]))


def _list_folder(spec: str, handle, inner: str) -> Listing:
    from pyarrow import fs

    found = []
    for entry in handle.get_file_info(fs.FileSelector(inner, recursive=True)):
        relative = PurePosixPath(entry.path).relative_to(PurePosixPath(inner))
        if any(part.startswith(".") for part in relative.parts) or entry.type != fs.FileType.File:
            continue
        if relative.suffix.lower() in AUDIO_EXTENSIONS:
            found.append(_join(spec, relative))
    return Listing(sorted(found), folder=spec.rstrip("/"))


def _join(spec: str, relative: PurePosixPath) -> str:
    return f"{spec.rstrip('/')}/{relative.as_posix()}" if is_uri(spec) else str(Path(spec) / relative)


def _read_paths(spec: str, handle, inner: str, kind: str) -> list[str]:
    """The `path` column; relative entries are relative to the table's folder, as in manifests."""
    table = _read_table(spec, handle, inner, kind)
    if PATH_COLUMN not in table.column_names:
        raise SourceError(f"{spec}: no {PATH_COLUMN!r} column (columns: {', '.join(table.column_names) or 'none'})")
    values = table.column(PATH_COLUMN).to_pylist()
    bad = [n for n, v in enumerate(values, start=1) if not isinstance(v, str) or not v.strip()]
    if bad:
        raise SourceError(f"{spec}: row {bad[0]} has an empty or non-text path")
    base = spec.rsplit("/", 1)[0] if is_uri(spec) else str(Path(spec).parent)
    return [v if is_uri(v) or os.path.isabs(v) else _join(base, PurePosixPath(v)) for v in values]


def _read_table(spec: str, handle, inner: str, kind: str):
    import pyarrow as pa
    from pyarrow import csv, json, parquet

    try:
        if kind == "parquet":
            return parquet.read_table(inner, filesystem=handle)
        with handle.open_input_stream(inner) as stream:
            if kind == "json":
                return json.read_json(stream)
            options = csv.ParseOptions(delimiter="\t" if kind == "tsv" else ",", quote_char=kind != "tsv" and '"')
            return csv.read_csv(stream, parse_options=options,
                                convert_options=csv.ConvertOptions(column_types={PATH_COLUMN: pa.string()}))
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SourceError(f"{spec}: cannot read it as {kind} ({first})") from None


@contextmanager
def local_copy(source: str) -> Iterator[Path]:
    """A local path for `source`: itself, or a temporary copy of a remote file (removed afterwards)."""
    if not is_uri(source):
        yield Path(source)
        return
    handle, inner = filesystem(source)
    folder = tempfile.mkdtemp(prefix="whisper-eas-")
    local = Path(folder) / PurePosixPath(inner).name
    try:
        with handle.open_input_stream(inner) as stream, open(local, "wb") as out:
            shutil.copyfileobj(stream, out, length=1 << 22)
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)
