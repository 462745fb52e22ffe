"""Full 30 s windows of continuous speech, cut from the dev set's long recordings.

The long recordings are single-speaker utterances joined with 0.3 s of silence, so each
utterance's offset is known exactly from the short manifest. Consecutive utterances are packed
into windows of at most 30 s; a window's reference is the joined text of its utterances. This is
the hard regime for pruning: no padding to drop, speech everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from whisper_eas.audio import SAMPLE_RATE, load_audio
from whisper_eas.errors import InputError
from whisper_eas.evaluation.manifest import Utterance, read_manifest

GAP_S = 0.3  # silence between utterances in the long recordings (speech-dev SOURCE.md)
WINDOW_S = 30.0


@dataclass(frozen=True)
class Window:
    id: str
    source: Path
    start_s: float
    end_s: float
    text: str


def _members(long_id: str, short: list[Utterance]) -> list[Utterance]:
    """Short utterances a long recording was made of, in id order."""
    stem = long_id.removeprefix("long-")
    if stem.startswith("cathy-"):
        first, last = stem.split("-")[1:3]
        return [u for u in short if u.id.startswith("cathy-arctic_") and first <= u.id.split("_")[1] <= last]
    if stem.startswith("ljspeech-"):
        first, last = stem.rsplit("-", 2)[1:]
        return [u for u in short if u.id.startswith("ljspeech-LJ001-") and first <= u.id.rsplit("-", 1)[1] <= last]
    return [u for u in short if u.id.startswith(stem + "-")]


def plan_windows(
    long_manifest: Path, short_manifest: Path, window_s: float = WINDOW_S, min_s: float = 20.0
) -> list[Window]:
    """One window per starting utterance: as many consecutive utterances as fit in `window_s`.

    Windows overlap (each utterance starts one); those shorter than `min_s` (the ends of
    recordings) are left out, so every window is mostly speech.
    """
    short = sorted(read_manifest(short_manifest), key=lambda u: u.id)
    windows: list[Window] = []
    for rec in read_manifest(long_manifest):
        members = _members(rec.id, short)
        offsets = np.cumsum([0.0] + [u.duration_s + GAP_S for u in members])
        if abs(offsets[-1] - GAP_S - rec.duration_s) > 0.05:
            raise InputError(f"{rec.id}: member durations do not add up to the recording ({offsets[-1]:.2f}s)")
        for first in range(len(members)):
            last = first
            while last + 1 < len(members) and offsets[last + 1] + members[last + 1].duration_s - offsets[first] <= window_s:
                last += 1
            start, end = float(offsets[first]), float(offsets[last] + members[last].duration_s)
            if end - start >= min_s:
                text = " ".join(m.text for m in members[first : last + 1])
                windows.append(Window(f"{rec.id}-from{first:02d}", rec.path, start, end, text))
    return windows


def write_windows(windows: list[Window], out_dir: Path) -> Path:
    """Write each window as a 16 kHz wav and a manifest.tsv beside them; returns the manifest."""
    import soundfile as sf

    out_dir.mkdir(parents=True, exist_ok=True)
    cache: dict[Path, np.ndarray] = {}
    lines = ["id\tpath\tduration_s\ttext"]
    for w in windows:
        audio = cache.setdefault(w.source, load_audio(w.source))
        clip = audio[int(round(w.start_s * SAMPLE_RATE)) : int(round(w.end_s * SAMPLE_RATE))]
        sf.write(out_dir / f"{w.id}.wav", clip, SAMPLE_RATE, subtype="PCM_16")
        lines.append(f"{w.id}\t{w.id}.wav\t{len(clip) / SAMPLE_RATE:.3f}\t{w.text}")
    manifest = out_dir / "manifest.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest
