"""openai/whisper's `hallucination_silence_threshold`: skip silence around likely hallucinations.

With word timestamps, a segment whose first words are anomalous (improbable, very short or very
long) and that sits between silences longer than the threshold is taken for a hallucination: it and
the rest of the window are dropped and the seek moves to its start, so the next window begins at
the speech after the silence instead. A window whose first segment is anomalous and starts more
than the threshold after the window is not kept at all: the seek moves past the leading silence.
The rules and constants are openai/whisper's `transcribe.py` (faster-whisper ports the same, less
the "remaining duration" seek of a window that ends in an unfinished segment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from whisper_eas.features import FRAMES_PER_SECOND, N_FRAMES
from whisper_eas.results import Segment, Word

PUNCTUATION = "\"'“¿([{-\"'.。,，!！?？:：”)]}、"  # openai's: words that are only these are not scored


def word_anomaly_score(word: Word) -> float:
    """openai's: improbable (< 0.15), very short (< 0.133 s) or very long (> 2 s) words score."""
    duration = word.end - word.start
    score = 0.0
    if word.probability < 0.15:
        score += 1.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > 2.0:
        score += duration - 2.0
    return score


def is_segment_anomaly(segment: Segment | None) -> bool:
    """The first 8 non-punctuation words score 3 or more, or about one per word."""
    if segment is None or not segment.words:
        return False
    words = [w for w in segment.words if w.word not in PUNCTUATION][:8]
    score = sum(word_anomaly_score(w) for w in words)
    return score >= 3 or score + 0.01 >= len(words)


def _next_words_segment(segments: Sequence[Segment]) -> Segment | None:
    return next((s for s in segments if s.words), None)


def last_word_end(segments: Sequence[Segment]) -> float | None:
    """openai's `get_end`: the last word's end, else the last segment's end, else None."""
    return next((w.end for s in reversed(segments) for w in reversed(s.words or [])),
                segments[-1].end if segments else None)


@dataclass(frozen=True)
class Window:
    """Where a decoded window lies, in seconds and mel frames."""

    previous_seek: int  # frame the window started at
    segment_size: int  # frames of audio in it
    content_frames: int  # frames of the whole file

    @property
    def offset(self) -> float:
        return self.previous_seek / FRAMES_PER_SECOND

    @property
    def duration(self) -> float:
        return self.segment_size / FRAMES_PER_SECOND

    @property
    def end_time(self) -> float:  # openai's window_end_time: the full 30 s window, padding included
        return (self.previous_seek + N_FRAMES) / FRAMES_PER_SECOND


def skip_silence(segments: list[Segment], window: Window, seek: int, single_timestamp_ending: bool,
                 last_speech: float, threshold: float) -> tuple[list[Segment] | None, int]:
    """Apply the threshold to a window's aligned segments.

    Returns the segments to keep (None: keep none of the window, and do not count it as decoded
    text: openai's `continue`) and the new seek in frames.
    """
    if not single_timestamp_ending:
        end = last_word_end(segments)
        if end is not None and end > window.offset:
            remaining = window.end_time - end
            whole = window.previous_seek + window.segment_size
            seek = round(end * FRAMES_PER_SECOND) if remaining > threshold else whole

    first = _next_words_segment(segments)
    if first is not None and is_segment_anomaly(first):
        gap = first.start - window.offset
        if gap > threshold:
            return None, window.previous_seek + round(gap * FRAMES_PER_SECOND)

    hal_last_end = last_speech
    for i, segment in enumerate(segments):
        if not segment.words:
            continue
        if is_segment_anomaly(segment):
            following = _next_words_segment(segments[i + 1 :])
            next_start = following.words[0].start if following is not None else window.offset + window.duration
            silence_before = (segment.start - hal_last_end > threshold or segment.start < threshold
                              or segment.start - window.offset < 2.0)
            silence_after = (next_start - segment.end > threshold or is_segment_anomaly(following)
                             or window.end_time - segment.end < 2.0)
            if silence_before and silence_after:
                seek = round(max(window.offset + 1, segment.start) * FRAMES_PER_SECOND)
                if window.content_frames / FRAMES_PER_SECOND - segment.end < threshold:
                    seek = window.content_frames
                return segments[:i], seek
        hal_last_end = segment.end
    return segments, seek
