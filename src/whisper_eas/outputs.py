"""Output formats for transcripts: txt, json, srt, vtt (written atomically, so a crash never leaves
half a file that a resumed run would mistake for a finished one)."""

from __future__ import annotations

import json
from pathlib import Path

from whisper_eas.errors import ConfigError
from whisper_eas.io_utils import atomic_write_text
from whisper_eas.results import Segment, TranscriptionResult

FORMATS = ("txt", "json", "srt", "vtt")


def expand_formats(fmt: str) -> tuple[str, ...]:
    """`all` -> every format; otherwise the one named."""
    if fmt == "all":
        return FORMATS
    if fmt not in FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)}, all")
    return (fmt,)


def format_timestamp(seconds: float, decimal: str = ",") -> str:
    """HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm (WebVTT)."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _cue_text(segment: Segment) -> str:
    """One line of cue text: no blank lines (they end a cue) and no '-->' (it starts one)."""
    return " ".join(segment.text.split()).replace("-->", "->")


def vtt_escape(text: str) -> str:
    """WebVTT cue text: '&' and '<' start entities and tags, so they are escaped; '>' too, which
    also turns a '-->' inside the text into '--&gt;' (a literal '-->' would start a new cue)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cues(result: TranscriptionResult) -> list[tuple[Segment, str]]:
    return [(s, text) for s in result.segments if (text := _cue_text(s))]


def render_srt(result: TranscriptionResult) -> str:
    blocks = [
        f"{n}\n{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{text}\n"
        for n, (s, text) in enumerate(_cues(result), start=1)
    ]
    return "\n".join(blocks)


def render_vtt(result: TranscriptionResult) -> str:
    blocks = [f"{format_timestamp(s.start, '.')} --> {format_timestamp(s.end, '.')}\n"
              f"{vtt_escape(' '.join(s.text.split()))}\n" for s, _ in _cues(result)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def render(result: TranscriptionResult, fmt: str) -> str:
    if fmt == "txt":
        return result.text + "\n"
    if fmt == "json":
        return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "srt":
        return render_srt(result)
    if fmt == "vtt":
        return render_vtt(result)
    raise ConfigError(f"unknown output format {fmt!r}")


def output_path(name: str | Path, output_dir: Path, fmt: str) -> Path:
    """`output_dir/name.fmt`; `name` is the input's stem, with subfolders for directory inputs."""
    return Path(output_dir) / f"{name}.{fmt}"


def outputs_exist(name: str | Path, output_dir: Path, formats: tuple[str, ...]) -> bool:
    """True when every requested output is already there (a finished file, for resuming)."""
    return all(output_path(name, output_dir, fmt).is_file() for fmt in formats)


def write_outputs(
    result: TranscriptionResult, output_dir: Path | None, formats: tuple[str, ...], name: str | Path | None = None
) -> dict[str, str | Path]:
    """Render each format; write it atomically under `output_dir` (or return the text when None).

    json is written last, so a json file marks every other format of that input as complete.
    """
    name = name if name is not None else Path(result.source).stem
    out: dict[str, str | Path] = {}
    for fmt in sorted(formats, key=lambda f: f == "json"):
        text = render(result, fmt)
        out[fmt] = text if output_dir is None else atomic_write_text(output_path(name, output_dir, fmt), text)
    return out
