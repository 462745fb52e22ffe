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
    audio_s: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def restart(self) -> None:
        self.started = time.perf_counter()

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self.started

    def summary(self) -> str:
        rtf = self.wall_s / self.audio_s if self.audio_s else float("nan")
        skipped = f", {self.skipped} skipped (outputs exist; --overwrite redoes them)" if self.skipped else ""
        return (f"{self.ok} file(s) ok, {self.failed} failed{skipped}; {self.audio_s / 3600:.3f} h of audio "
                f"transcribed in {self.wall_s:.1f} s, real-time factor {rtf:.3f}")


class Progress:
    """A bar over audio seconds with files done as a postfix; shown only on a terminal."""

    def __init__(self, n_files: int, total_audio_s: float):
        self.n_files, self.done = n_files, 0
        self.bar = tqdm(total=round(total_audio_s, 1), unit="s", unit_scale=False, desc="audio",
                        file=sys.stderr, disable=None, dynamic_ncols=True, leave=False,
                        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}{postfix}]")
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"{self.done}/{self.n_files} files", refresh=False)

    def advance(self, audio_s: float) -> None:
        self.done += 1
        if self.bar.n + audio_s > self.bar.total:  # header durations can be missing or short
            self.bar.total = round(self.bar.n + audio_s, 1)
        self.bar.update(round(audio_s, 1))
        self._postfix()

    def write(self, message: str) -> None:
        """A line that does not tear the bar."""
        tqdm.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
