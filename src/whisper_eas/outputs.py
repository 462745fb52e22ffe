"""Output formats for transcripts: txt, json, srt, vtt (written atomically)."""

from __future__ import annotations

import json
from pathlib import Path

from whisper_eas.io_utils import atomic_write_text
from whisper_eas.transcribe import TranscriptionResult


def render(result: TranscriptionResult, fmt: str) -> str:
    if fmt == "txt":
        return result.text + "\n"
    if fmt == "json":
        return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"
    raise ValueError(f"unknown output format {fmt!r}")


def output_path(source: str, output_dir: Path, fmt: str) -> Path:
    return Path(output_dir) / f"{Path(source).stem}.{fmt}"


def write_outputs(result: TranscriptionResult, output_dir: Path | None, formats: tuple[str, ...]) -> dict[str, str | Path]:
    """Render each format; write it atomically under `output_dir` (or return the text when None)."""
    out: dict[str, str | Path] = {}
    for fmt in formats:
        text = render(result, fmt)
        out[fmt] = text if output_dir is None else atomic_write_text(output_path(result.source, output_dir, fmt), text)
    return out
