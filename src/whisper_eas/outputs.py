"""Output formats for transcripts: txt, json, srt, vtt (written atomically, so a crash never leaves
half a file that a resumed run would mistake for a finished one)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

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


Cue = tuple[float, float, str]  # start, end (seconds), cue text


def _one_line(text: str) -> str:
    """Runs of whitespace (newlines too: a blank line ends a cue) as one space, a leading one kept."""
    return re.sub(r"\s+", " ", text)


def _srt_text(text: str) -> str:
    return _one_line(text).replace("-->", "->")


def _vtt_text(text: str) -> str:
    return vtt_escape(_one_line(text))


def _underline(text: str) -> str:
    """openai/whisper's `<u>` around a word, its leading space left outside the tag."""
    return re.sub(r"^(\s*)(.*)$", r"\1<u>\2</u>", text, flags=re.S)


def _highlighted(words: list, escape: Callable[[str], str]) -> list[Cue]:
    """openai/whisper's `--highlight_words`: one cue per word with that word underlined, and a plain
    cue over each gap between words (so the line stays on screen while nobody speaks)."""
    words = [w for w in words if w.word.strip()]
    texts = [escape(w.word) for w in words]
    texts[0] = texts[0].lstrip()
    plain, cues, last = "".join(texts), [], words[0].start
    for i, word in enumerate(words):
        if round(word.start * 1000) > round(last * 1000):
            cues.append((last, word.start, plain))
        cues.append((word.start, word.end, "".join(_underline(t) if j == i else t for j, t in enumerate(texts))))
        last = word.end
    return cues


def subtitle_cues(result: TranscriptionResult, escape: Callable[[str], str],
                  highlight_words: bool = False) -> list[Cue]:
    """A cue per segment; with `highlight_words`, openai's word-by-word cues for segments that have words."""
    cues: list[Cue] = []
    for segment, _ in _cues(result):
        if highlight_words and segment.words and any(w.word.strip() for w in segment.words):
            cues += _highlighted(segment.words, escape)
        else:
            cues.append((segment.start, segment.end, escape(segment.text).strip()))
    return cues


def render_srt(result: TranscriptionResult, highlight_words: bool = False) -> str:
    blocks = [
        f"{n}\n{format_timestamp(start)} --> {format_timestamp(end)}\n{text}\n"
        for n, (start, end, text) in enumerate(subtitle_cues(result, _srt_text, highlight_words), start=1)
    ]
    return "".join(block + "\n" for block in blocks)  # a blank line after every cue, the last too (srt.compose)


def render_vtt(result: TranscriptionResult, highlight_words: bool = False) -> str:
    blocks = [f"{format_timestamp(start, '.')} --> {format_timestamp(end, '.')}\n{text}\n"
              for start, end, text in subtitle_cues(result, _vtt_text, highlight_words)]
    return "WEBVTT\n\n" + "".join(block + "\n" for block in blocks)  # as openai's writer: a blank line after each


def render(result: TranscriptionResult, fmt: str, highlight_words: bool = False) -> str:
    """One format's text; `highlight_words` underlines each word as it is spoken in srt and vtt
    (segments need words: `word_timestamps=True`)."""
    if fmt == "txt":
        return result.text + "\n"
    if fmt == "json":
        return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "srt":
        return render_srt(result, highlight_words)
    if fmt == "vtt":
        return render_vtt(result, highlight_words)
    raise ConfigError(f"unknown output format {fmt!r}")


def output_path(name: str | Path, output_dir: Path, fmt: str) -> Path:
    """`output_dir/name.fmt`; `name` is the input's stem, with subfolders for directory inputs."""
    return Path(output_dir) / f"{name}.{fmt}"


def outputs_exist(name: str | Path, output_dir: Path, formats: tuple[str, ...]) -> bool:
    """True when every requested output is already there (a finished file, for resuming)."""
    return all(output_path(name, output_dir, fmt).is_file() for fmt in formats)


def write_outputs(
    result: TranscriptionResult, output_dir: Path | None, formats: tuple[str, ...], name: str | Path | None = None,
    highlight_words: bool = False,
) -> dict[str, str | Path]:
    """Render each format; write it atomically under `output_dir` (or return the text when None).

    json is written last, so a json file marks every other format of that input as complete.
    """
    name = name if name is not None else Path(result.source).stem
    out: dict[str, str | Path] = {}
    for fmt in sorted(formats, key=lambda f: f == "json"):
        text = render(result, fmt, highlight_words)
        out[fmt] = text if output_dir is None else atomic_write_text(output_path(name, output_dir, fmt), text)
    return out
