"""The sequential mode's VAD gate (`vad_filter`, faster-whisper's option of that name).

Silero VAD (`vad.py`) finds the speech of the whole recording with faster-whisper's sequential
defaults (`FILTER_VAD`: 2 s of silence end a span, 400 ms of padding, no length limit); the spans
are concatenated and only that audio is decoded, by the ordinary sequential algorithm
(`longform.py`). Silence, tones and noise then cost one VAD pass and give no text. Segment and word
times are mapped back to the recording as faster-whisper's `SpeechTimestampsMap` and
`restore_speech_timestamps` do: a time inside span i moves by the silence removed before span i.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np

from whisper_eas.audio import SAMPLE_RATE, AudioStream
from whisper_eas.results import Segment, WindowInfo
from whisper_eas.vad import SpeechSpan, VadOptions, default_vad, spans_of, speech_spans

# faster-whisper's `VadOptions()` defaults, which `WhisperModel.transcribe(vad_filter=True)` uses
FILTER_VAD = VadOptions(threshold=0.5, min_speech_ms=0, max_speech_s=float("inf"), min_silence_ms=2000,
                        speech_pad_ms=400)


@dataclass(frozen=True)
class SpeechMap:
    """Times in the concatenated speech -> times in the original recording."""

    spans: tuple[SpeechSpan, ...]
    n_samples: int  # of the original recording

    @property
    def duration_s(self) -> float:
        return self.n_samples / SAMPLE_RATE

    @property
    def speech_samples(self) -> int:
        return sum(s.samples for s in self.spans)

    def _ends(self) -> list[int]:
        """Each span's end sample in the concatenated speech."""
        ends, total = [], 0
        for span in self.spans:
            total += span.samples
            ends.append(total)
        return ends

    def span_index(self, t: float, is_end: bool = False) -> int:
        """The span holding speech time `t`; an end exactly at a span's end stays in that span."""
        ends = self._ends()
        sample = int(t * SAMPLE_RATE)
        if is_end and sample in ends:
            return ends.index(sample)
        return min(bisect.bisect(ends, sample), len(ends) - 1)

    def original(self, t: float, index: int | None = None, is_end: bool = False) -> float:
        """Speech time `t` (seconds) in recording time, rounded to ms."""
        if not self.spans:
            return t
        index = self.span_index(t, is_end) if index is None else index
        removed = self.spans[index].start - (self._ends()[index] - self.spans[index].samples)
        return round(t + removed / SAMPLE_RATE, 3)

    def restore(self, segment: Segment) -> Segment:
        """Map one segment (and its words, each word's ends resolved in the span of its middle) in place."""
        if segment.words:
            for word in segment.words:
                index = self.span_index((word.start + word.end) / 2)
                word.start, word.end = self.original(word.start, index), self.original(word.end, index)
            segment.start, segment.end = segment.words[0].start, segment.words[-1].end
        else:
            segment.start, segment.end = self.original(segment.start), self.original(segment.end, is_end=True)
        return segment


def gate(samples: np.ndarray, options: VadOptions = FILTER_VAD) -> tuple[np.ndarray, SpeechMap]:
    """The speech of 16 kHz `samples`, concatenated (empty when the VAD hears none), and its map.

    Unlike faster-whisper, the recording's edges are cut only where they are non-speech of at least
    `min_silence_ms`, as between spans: faster-whisper drops the 0.1-0.2 s before a clip's first
    word, which skips nothing worth skipping and shifts every window, and tiny.en's transcript with
    it (speech-dev long +0.51 WER from an 80 ms cut, speech-dev short -0.54: noise either way)."""
    spans = _gated_spans(speech_spans(samples, options), len(samples), options)
    speech = (np.concatenate([samples[s.start : s.end] for s in spans]).astype(np.float32, copy=False) if spans
              else np.zeros(0, np.float32))
    return speech, SpeechMap(spans, len(samples))


def _gated_spans(spans: list[SpeechSpan], n_samples: int, options: VadOptions) -> tuple[SpeechSpan, ...]:
    """The VAD's spans with the recording's edges cut only where they are `min_silence_ms` or more."""
    return _keep_short_edges(spans, n_samples, int(SAMPLE_RATE * options.min_silence_ms / 1000))


def _keep_short_edges(spans: list[SpeechSpan], n_samples: int, shortest: int) -> tuple[SpeechSpan, ...]:
    """Spans with a leading or trailing non-speech edge shorter than `shortest` samples given back."""
    if not spans:
        return ()
    first, last = spans[0], spans[-1]
    start = 0 if first.start < shortest else first.start
    end = n_samples if n_samples - last.end < shortest else last.end
    if len(spans) == 1:
        return (SpeechSpan(start, end),)
    return (SpeechSpan(start, first.end), *spans[1:-1], SpeechSpan(last.start, end))


def speech_stream(stream: AudioStream, check: bool = True) -> tuple[AudioStream, SpeechMap]:
    """A stream of `stream`'s speech only, and the map back to the recording; its warnings are kept.

    Two passes over the input, as the ungated mode makes: the VAD's (checked as the sequential mode
    checks a file when `check`), which keeps only its probabilities, then the speech spans' blocks
    as the decoder reads them: memory does not grow with the recording's length."""
    probs, n_samples = default_vad().stream_probabilities(stream.blocks(check))
    spans = _gated_spans(spans_of(probs, n_samples, FILTER_VAD), n_samples, FILTER_VAD)
    gated = AudioStream(stream.source, lambda: _speech_blocks(stream, spans))
    gated.warnings = list(stream.warnings)
    return gated, SpeechMap(spans, n_samples)


def _speech_blocks(stream: AudioStream, spans: tuple[SpeechSpan, ...]) -> Iterator[np.ndarray]:
    """The parts of a fresh pass over `stream` that fall inside `spans`, in order."""
    position, index = 0, 0
    yield np.zeros(0, np.float32)  # a stream with no speech is one empty block, as an empty array's
    for block in stream.blocks(False):
        end = position + len(block)
        while index < len(spans) and spans[index].start < end:
            span = spans[index]
            lo, hi = max(span.start, position), min(span.end, end)
            if hi > lo:
                yield block[lo - position : hi - position]
            if span.end > end:
                break
            index += 1
        position = end
        if index >= len(spans):
            return


def recording_windows(windows: list[WindowInfo], speech_map: SpeechMap) -> list[WindowInfo]:
    """A gated file's decoded windows with their starts in recording time."""
    return [replace(w, start=speech_map.original(w.start)) for w in windows]
