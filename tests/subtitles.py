"""Strict SRT / WebVTT syntax checks shared by the output and CLI tests."""

from __future__ import annotations

import re

SRT_TIME = r"(\d{2}):([0-5]\d):([0-5]\d),(\d{3})"
VTT_TIME = r"(\d{2}):([0-5]\d):([0-5]\d)\.(\d{3})"


def _seconds(match: tuple[str, ...]) -> float:
    h, m, s, ms = map(int, match)
    return h * 3600 + m * 60 + s + ms / 1000


def _check_cues(cues: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    assert cues, "no cues"
    previous_end = 0.0
    for start, end, text in cues:
        assert start <= end, f"cue ends before it starts: {start} > {end}"
        assert start >= previous_end - 1e-6, f"cues overlap or go back in time: {start} < {previous_end}"
        assert text.strip() and "-->" not in text
        previous_end = end
    return cues


def check_srt(text: str) -> list[tuple[float, float, str]]:
    """Numbered blocks 1..n, 'HH:MM:SS,mmm --> HH:MM:SS,mmm', one text line, blank line between."""
    blocks = text.strip("\n").split("\n\n")
    cues = []
    for number, block in enumerate(blocks, start=1):
        lines = block.split("\n")
        assert len(lines) == 3, f"block {number} is not index/time/text: {block!r}"
        assert lines[0] == str(number), f"expected cue number {number}, got {lines[0]!r}"
        m = re.fullmatch(f"{SRT_TIME} --> {SRT_TIME}", lines[1])
        assert m, f"bad SRT time line {lines[1]!r}"
        cues.append((_seconds(m.groups()[:4]), _seconds(m.groups()[4:]), lines[2]))
    return _check_cues(cues)


def check_vtt(text: str) -> list[tuple[float, float, str]]:
    """'WEBVTT' header, blank line, then 'HH:MM:SS.mmm --> HH:MM:SS.mmm' + text blocks."""
    assert text.startswith("WEBVTT\n\n"), "missing WEBVTT header"
    cues = []
    for block in text[len("WEBVTT\n\n"):].strip("\n").split("\n\n"):
        lines = block.split("\n")
        assert len(lines) == 2, f"block is not time/text: {block!r}"
        m = re.fullmatch(f"{VTT_TIME} --> {VTT_TIME}", lines[0])
        assert m, f"bad WebVTT time line {lines[0]!r}"
        cues.append((_seconds(m.groups()[:4]), _seconds(m.groups()[4:]), lines[1]))
    return _check_cues(cues)
