"""Progress over files and audio seconds, and the run's final summary."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from tqdm import tqdm


@dataclass
class RunStats:
    """What a trt-transcribe run did, for the final summary line."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    partial: int = 0  # ok files transcribed from a partial decode (--allow-partial)
    renamed: int = 0  # inputs written under a numbered or extended name (another input had theirs)
    audio_s: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def restart(self) -> None:
        self.started = time.perf_counter()

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self.started

    def summary(self) -> str:
        skipped = f", {self.skipped} skipped (outputs exist; --overwrite redoes them)" if self.skipped else ""
        partial = f", {self.partial} PARTIAL (decoded only in part; see the warnings)" if self.partial else ""
        renamed = f", {self.renamed} renamed to avoid an output-name collision" if self.renamed else ""
        if not self.audio_s:  # nothing transcribed: no real-time factor to give
            return f"{self.ok} file(s) ok{partial}, {self.failed} failed{skipped}{renamed}; no audio transcribed"
        return (f"{self.ok} file(s) ok{partial}, {self.failed} failed{skipped}{renamed}; "
                f"{self.audio_s / 3600:.3f} h of audio transcribed in {self.wall_s:.1f} s, "
                f"real-time factor {self.wall_s / self.audio_s:.3f}")


class Progress:
    """A bar over audio seconds with files done as a postfix on a terminal; elsewhere (a log file)
    a plain line every `interval_s` seconds, so a long file shows it is moving."""

    def __init__(self, n_files: int, total_audio_s: float, interval_s: float = 60.0):
        self.n_files, self.done = n_files, 0
        self.finished_s, self.open_s = 0.0, 0.0
        self.interval_s, self.started = interval_s, time.perf_counter()
        self.last_line = self.started
        self.bar = tqdm(total=round(total_audio_s, 1), unit="s", unit_scale=False, desc="audio",
                        file=sys.stderr, disable=None, dynamic_ncols=True, leave=False,
                        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}{postfix}]")
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"{self.done}/{self.n_files} files", refresh=False)

    def advance(self, audio_s: float) -> None:
        """A file finished (or failed) with `audio_s` seconds of audio."""
        self.done += 1
        self.finished_s += audio_s
        self._show()

    def windows(self, open_s: float) -> None:
        """A round of windows was decoded: `open_s` seconds done in files not yet finished."""
        self.open_s = open_s
        self._show()

    def _show(self) -> None:
        position = self.finished_s + self.open_s
        if position > (self.bar.total or 0):  # header durations can be missing or short
            self.bar.total = round(position, 1)
        self.bar.update(round(position - self.bar.n, 1))
        self._postfix()
        now = time.perf_counter()
        if self.bar.disable and now - self.last_line >= self.interval_s:
            self.last_line = now
            total = self.bar.total or 0
            share = f" ({100 * position / total:.0f}%)" if total else ""
            self.write(f"progress: {position / 60:.1f} of {total / 60:.1f} min of audio{share}, "
                       f"{self.done}/{self.n_files} files, {(now - self.started) / 60:.1f} min elapsed")

    def write(self, message: str) -> None:
        """A line that does not tear the bar."""
        tqdm.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
