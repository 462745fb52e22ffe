"""openai/whisper's sequential long-form algorithm, one file at a time, backend-free.

A `LongformFile` holds one file's log-mel source (`StreamMel`: the frames openai/whisper would
compute over the whole file with 30 s of padding, produced window by window so memory stays flat)
and its decoding state. `next_window()` says which 30 s window to decode next and with
which previous-text prompt; `accept()` takes the decoded window, cuts it into timestamped segments
and moves the seek to the end of the last complete segment, exactly as openai/whisper's
`transcribe()` does. Keeping the state machine apart from the decoding lets a scheduler advance
many files in lockstep and batch their windows.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from whisper_eas.audio import SAMPLE_RATE, AudioStream, array_stream
from whisper_eas.decoding import DecodingResult
from whisper_eas.errors import ConfigError
from whisper_eas.features import (FRAMES_PER_SECOND, HOP_LENGTH, INPUT_STRIDE, N_FRAMES, TIME_PRECISION, StreamMel,
                                  pad_or_trim)
from whisper_eas.hallucination import Window, last_word_end, skip_silence
from whisper_eas.results import Segment, WindowInfo
from whisper_eas.tokenizer import WhisperTokenizer
from whisper_eas.vad_gate import SpeechMap

FRAME_S = HOP_LENGTH / SAMPLE_RATE  # seconds per mel frame
RESUME_GAP = FRAMES_PER_SECOND  # after a window's last timestamp, speech this much later was not written


@dataclass(frozen=True)
class LongformOptions:
    """openai/whisper's fallback and conditioning settings. Frozen: verified on construction (`check()`)."""

    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4  # above: too repetitive, retry hotter
    logprob_threshold: float | None = -1.0  # below: too unsure, retry hotter
    no_speech_threshold: float | None = 0.6  # above (and unsure): silence, skip the window
    condition_on_previous_text: bool = True  # prompt each window with the text so far
    seed: int = 0  # sampling at T > 0 is seeded per window, so reruns and batch sizes agree
    initial_prompt: str | None = None  # text before the first window (dropped at a prompt reset, as openai)
    hotwords: str | None = None  # text kept in front of every window's prompt (faster-whisper's hotwords)
    prefix: str | None = None  # text the first window's transcript starts with (faster-whisper's prefix)
    word_timestamps: bool = False  # align each segment's words (cross-attention + DTW, `alignment.py`)
    # with word timestamps: skip silences longer than this (s) around likely hallucinations (openai's option)
    hallucination_silence_threshold: float | None = None
    # the audio's second opinion on the model's silences (False: openai's rules alone): a window the
    # model calls no-speech but keeps for its confident text ("you") is skipped when its audio has no
    # signal or Silero VAD, where installed, hears no speech in it; a window the model ends early is
    # decoded again from its last timestamp when the VAD hears speech after it (LongformFile.speech_check)
    vad_check: bool = True
    # detect the language of every window, not only the first (faster-whisper's multilingual=True):
    # a recording that changes language is decoded in each part's language; no effect when it is given
    multilingual: bool = False
    # decode only the speech Silero VAD finds, where it is installed (faster-whisper's vad_filter):
    # silence, tones and noise are never decoded; times are mapped back to the recording (`vad_gate.py`)
    vad_filter: bool = True
    # a language detected on the first window with a top probability at most this is detected on up
    # to this many windows, as faster-whisper's language_detection_threshold / _segments decide
    # (window_decode.vote_language); faster-whisper's default reads one window only
    language_detection_threshold: float = 0.5
    language_detection_segments: int = 3

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        temps = self.temperatures
        if not temps or temps[0] != 0.0 or list(temps) != sorted(temps):
            raise ConfigError(f"temperatures must start at 0.0 and ascend, got {temps}")
        for name in ("initial_prompt", "hotwords", "prefix"):  # lone surrogates: bytes that were not UTF-8
            text = getattr(self, name)
            if text is not None and (not isinstance(text, str) or any("\ud800" <= c <= "\udfff" for c in text)):
                raise ConfigError(f"{name} must be UTF-8 text, got {ascii(text)}")
        threshold = self.hallucination_silence_threshold
        if threshold is not None and (threshold <= 0 or not self.word_timestamps):
            raise ConfigError("hallucination_silence_threshold needs word_timestamps=True and a positive "
                              f"number of seconds, got {threshold}")
        if self.language_detection_segments < 1 or not 0.0 <= self.language_detection_threshold <= 1.0:
            raise ConfigError("language_detection_segments must be >= 1 and language_detection_threshold within "
                              f"[0, 1], got {self.language_detection_segments}, {self.language_detection_threshold}")


def needs_fallback(result: DecodingResult, options: LongformOptions) -> bool:
    """openai/whisper's rule: repetitive or unsure output is retried, unless the window is silence
    (no-speech probability above its threshold *and* log-probability below its threshold; a
    likely-silent window whose text is confident but repetitive is still retried)."""
    too_repetitive = (options.compression_ratio_threshold is not None
                      and result.compression_ratio > options.compression_ratio_threshold)
    too_unsure = options.logprob_threshold is not None and result.avg_logprob < options.logprob_threshold
    silent = (too_unsure and options.no_speech_threshold is not None
              and result.no_speech_prob > options.no_speech_threshold)
    return (too_repetitive or too_unsure) and not silent


def is_silence(result: DecodingResult, options: LongformOptions) -> bool:
    """Skip the window: the model says no speech and is not confident about any text."""
    if options.no_speech_threshold is None or not result.no_speech_prob > options.no_speech_threshold:
        return False
    return options.logprob_threshold is None or result.avg_logprob <= options.logprob_threshold


def likely_no_speech(result: DecodingResult, options: LongformOptions) -> bool:
    """The model puts the no-speech probability above its threshold, whatever the text's confidence.

    Text kept from such a window (openai keeps it when it is confident: "you", ". . .") must not
    prompt the next windows: conditioned on it, a window that does hold speech is decoded as more of
    the same and the speech is lost (a sentence inside minutes of silence)."""
    return options.no_speech_threshold is not None and result.no_speech_prob > options.no_speech_threshold


@dataclass(frozen=True)
class Span:
    """Part of a window's tokens with its start/end offsets in seconds from the window start."""

    start: float
    end: float
    tokens: list[int]


def split_segments(tokens: list[int], timestamp_begin: int, segment_size: int) -> tuple[list[Span], int]:
    """Cut a window's tokens at timestamp pairs; return the spans and how many mel frames to seek.

    A window ending in a complete segment followed by a lone timestamp ("<|t1|> text <|t2|>") was
    fully transcribed: seek past it. Otherwise seek to the end of the last complete segment, so the
    unfinished speech is decoded again at the start of the next window.
    """
    is_ts = [t >= timestamp_begin for t in tokens]
    single_timestamp_ending = is_ts[-2:] == [False, True]
    cuts = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
    if not cuts:
        return [_whole_window(tokens, timestamp_begin, segment_size)], segment_size
    if single_timestamp_ending:
        cuts.append(len(tokens))
    spans, last = [], 0
    for cut in cuts:
        piece = tokens[last:cut]
        start, end = (piece[0] - timestamp_begin) * TIME_PRECISION, (piece[-1] - timestamp_begin) * TIME_PRECISION
        spans.append(Span(start, end, piece))
        last = cut
    if single_timestamp_ending:
        return spans, segment_size
    advance = (tokens[last - 1] - timestamp_begin) * INPUT_STRIDE
    if advance <= 0:  # only an empty segment at 0.00 completed: seeking nowhere would loop forever
        return [_whole_window(tokens, timestamp_begin, segment_size)], segment_size
    return spans, advance


def _whole_window(tokens: list[int], timestamp_begin: int, segment_size: int) -> Span:
    """No complete segment: one span over the window, ending at its last timestamp if it has one."""
    stamps = [t for t in tokens if t >= timestamp_begin]
    duration = segment_size * FRAME_S
    if stamps and stamps[-1] != timestamp_begin:
        duration = (stamps[-1] - timestamp_begin) * TIME_PRECISION
    return Span(0.0, duration, tokens)


@dataclass
class WindowRequest:
    """One window to decode: features, previous-text prompt, language (None: detect), sampling seed."""

    mel: np.ndarray  # [n_mels, 3000]
    prompt: tuple[int, ...]
    language: str | None
    seed: int
    prefix: tuple[int, ...] = ()  # text forced at the start of the transcript (a file's first window)
    # with per-window detection: the previous text's language and how many of the prompt's last
    # tokens are that text (dropped where the window is detected in another language)
    prompt_language: str | None = None
    previous: int = 0
    # a file's first window, language to detect: the features of its next windows, read only when
    # the first is unsure (`LongformOptions.language_detection_segments`)
    later_windows: Callable[[], Iterator[np.ndarray]] | None = None
    # the window holds its whole input (a file of up to 30 s at its start, a batched chunk): what a
    # prune config with scope="whole" sparsifies
    whole_file: bool = True


@dataclass
class WindowOutcome:
    """A decoded window: the result that was kept and how it was obtained."""

    result: DecodingResult
    kept_frames: int
    n_frames: int
    fallback: str | None = None  # guard reason for the clean re-run (dense encoder, exact step)
    kept: list[int] | None = None  # which encoder frames were kept, in time order (None: all)
    language_prob: float | None = None  # top language's probability, when detected on this window
    unguarded: "WindowOutcome | None" = None  # the sparse outcome the guard replaced

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept_frames / self.n_frames


@dataclass
class LongformFile:
    """One file's features and sequential-decoding state."""

    source: str
    mel: StreamMel  # the file's features, read window by window
    n_samples: int
    tokenizer: WhisperTokenizer
    options: LongformOptions
    language: str | None = None  # None: detect on the first window (multilingual models)
    initial_prompt: tuple[int, ...] = ()
    seek: int = 0
    tokens: list[int] = field(default_factory=list)
    prompt_reset_since: int = 0
    segments: list[Segment] = field(default_factory=list)
    windows: list[WindowInfo] = field(default_factory=list)
    load_s: float = 0.0  # decoding the audio and computing its log-mel
    warnings: list[str] = field(default_factory=list)  # e.g. a partial decode that was allowed
    language_prob: float | None = None  # top language's probability where it was detected
    last_speech: float = 0.0  # end of the last aligned word (openai's last_speech_timestamp)
    # word timing for one accepted window: (window mel [n_mels, 3000], its audio frames, outcome,
    # its new segments, end of the speech before them); see alignment.align_words
    align: Callable[[np.ndarray, int, WindowOutcome, list[Segment], float], None] | None = None
    # whether a window's samples hold speech (Silero VAD; None: the model's no-speech rule alone)
    speech_check: Callable[[np.ndarray], bool] | None = None
    # with vad_filter: the audio is the recording's speech only; accepted segments are mapped back by it
    speech_map: SpeechMap | None = None

    @classmethod
    def from_samples(cls, source: str, samples: np.ndarray, n_mels: int, tokenizer: WhisperTokenizer,
                     options: LongformOptions, language: str | None = None,
                     initial_prompt: tuple[int, ...] = ()) -> "LongformFile":
        return cls.from_stream(array_stream(source, samples), n_mels, tokenizer, options, language, initial_prompt)

    @classmethod
    def from_stream(cls, stream: AudioStream, n_mels: int, tokenizer: WhisperTokenizer,
                    options: LongformOptions, language: str | None = None,
                    initial_prompt: tuple[int, ...] = (), check: bool = True) -> "LongformFile":
        """Scan the stream once (checks, peak, length); windows are featurized when decoded.
        `check=False` takes empty or all-zero audio as it is (API arrays: no segments, no error)."""
        started = time.perf_counter()
        mel = StreamMel(stream.blocks if check else lambda _check: stream.blocks(False), n_mels)
        state = cls(stream.source, mel, mel.n_samples, tokenizer, options, language, tuple(initial_prompt))
        state.warnings = list(stream.warnings)
        state.load_s = time.perf_counter() - started
        return state

    def __post_init__(self) -> None:
        if self.options.initial_prompt and not self.tokens:  # openai: part of the text so far
            self.tokens = self.tokenizer.encode(" " + self.options.initial_prompt.strip())
        self._window: np.ndarray | None = None  # the last window handed out (word alignment reads it)
        self._flat = False  # the last window's audio features are all equal (digital silence)
        self._detect_each = self.options.multilingual and self.language is None  # not given: detect per window
        self._last_language: str | None = None  # the last decoded window's language
        hotwords = self.options.hotwords
        self._hotwords = tuple(self.tokenizer.encode(" " + hotwords.strip())) if hotwords else ()
        prefix = self.options.prefix
        self._prefix = tuple(self.tokenizer.encode(" " + prefix.strip())) if prefix else ()

    @property
    def content_frames(self) -> int:
        return self.mel.content_frames

    @property
    def duration_s(self) -> float:
        return self.n_samples / SAMPLE_RATE

    @property
    def done(self) -> bool:
        return self.seek >= self.content_frames

    @property
    def segment_size(self) -> int:
        return min(N_FRAMES, self.content_frames - self.seek)

    def next_window(self) -> WindowRequest:
        frames = self.mel.frames(self.seek, self.seek + self.segment_size)
        self._flat = frames.size > 0 and float(frames.max() - frames.min()) < 1e-6
        window = pad_or_trim(frames)
        if self.align is not None:
            self._window = window
        prompt = self.initial_prompt + self._hotwords + tuple(self.tokens[self.prompt_reset_since :])
        whole = self.seek == 0 and self.content_frames <= N_FRAMES
        if not self._detect_each:
            return WindowRequest(window, prompt, self.language, seed=self.options.seed * 1_000_003 + self.seek,
                                 prefix=self._prefix if self.seek == 0 else (), later_windows=self._later_windows(),
                                 whole_file=whole)
        return WindowRequest(window, prompt, None, seed=self.options.seed * 1_000_003 + self.seek,
                             prefix=self._prefix if self.seek == 0 else (), prompt_language=self._last_language,
                             previous=len(self.tokens) - self.prompt_reset_since, whole_file=whole)

    def _later_windows(self) -> Callable[[], Iterator[np.ndarray]] | None:
        """The windows after the first, for language detection (None: nothing to detect or no more audio)."""
        count = min(self.options.language_detection_segments, -(-self.content_frames // N_FRAMES)) - 1
        if self.seek > 0 or self.language is not None or count < 1:
            return None
        starts = [N_FRAMES * (k + 1) for k in range(count)]
        return lambda: (pad_or_trim(self.mel.frames(a, min(a + N_FRAMES, self.content_frames))) for a in starts)

    def accept(self, outcome: WindowOutcome) -> None:
        """Turn a decoded window into segments and advance the seek."""
        result, size, offset = outcome.result, self.segment_size, self.seek * FRAME_S
        if self.language is None:
            self.language, self.language_prob = result.language, outcome.language_prob
        skipped = is_silence(result, self.options) or self._heard_as_silence(result, size)
        self.windows.append(WindowInfo(offset, size * FRAME_S, outcome.kept_frames, outcome.n_frames,
                                       result.temperature, outcome.fallback, skipped))
        if skipped:
            self.seek += size
            return
        spans, advance = split_segments(result.tokens, self.tokenizer.timestamp_begin, size)
        advance = self._resume_unheard(result.tokens, spans, advance, size)
        segments = [self._segment(span, offset, outcome) for span in spans]
        seek = self.seek + advance
        if self.align is not None and segments:
            kept, seek = self._align(segments, outcome, size, seek)
            if kept is None:  # a hallucination after leading silence: nothing of this window is kept
                self.seek = seek
                return
            segments = kept
        if self._detect_each and self._last_language not in (None, result.language):
            self.prompt_reset_since = len(self.tokens)  # the text so far is in another language
        self._last_language = result.language
        for segment in segments:
            if segment.end > segment.start and segment.text.strip():  # instantaneous or empty: dropped, as openai
                if segment.words:  # its bounds are its words' (faster-whisper's tests hold it to that)
                    segment.start, segment.end = segment.words[0].start, segment.words[-1].end
                segment.id = len(self.segments)
                self.segments.append(segment if self.speech_map is None else self.speech_map.restore(segment))
                self.tokens.extend(segment.tokens)
        self.seek = seek
        if not self.options.condition_on_previous_text or result.temperature > 0.5 or likely_no_speech(result,
                                                                                                      self.options):
            self.prompt_reset_since = len(self.tokens)

    def _heard_as_silence(self, result: DecodingResult, size: int) -> bool:
        """openai's rule keeps a no-speech window's text when it is confident: tiny.en says " you"
        (avg_logprob -0.76, no-speech 0.95) in every window of digital silence; and it keeps the last
        sample of a window no temperature could decode well ("Thanks for watching!" on a tone).
        Where the audio agrees, such a window is silence: its features are all equal (every frame at
        the 8-decade floor: no signal at all), or the VAD hears no speech in its samples. Where it
        hears any, the text is kept, so no speech is dropped on the model's word alone."""
        doubtful = likely_no_speech(result, self.options) or needs_fallback(result, self.options)
        if not self.options.vad_check or not doubtful:
            return False
        if self._flat:
            return True
        return self.speech_check is not None and not self.speech_check(self.mel.samples(self.seek, self.seek + size))

    def _resume_unheard(self, tokens: list[int], spans: list[Span], advance: int, size: int) -> int:
        """A window that ends in a complete segment and a lone timestamp is taken as fully
        transcribed: openai seeks past the whole window. A model that stops at a change of language
        (base, English then German) leaves the rest unwritten, and 25 s of speech were lost. Where the
        VAD hears speech starting more than a second after the last timestamp, the next window
        starts at that timestamp instead; where it hears none, openai's seek stands."""
        if self.speech_check is None or not self.options.vad_check or advance != size or len(tokens) < 2:
            return advance
        begin = self.tokenizer.timestamp_begin
        if not (tokens[-2] < begin <= tokens[-1]):
            return advance
        end = round(spans[-1].end * FRAMES_PER_SECOND)
        if end <= 0 or size - end < RESUME_GAP + FRAMES_PER_SECOND:
            return advance
        heard = self.speech_check(self.mel.samples(self.seek + end + RESUME_GAP, self.seek + size))
        return end if heard else advance

    def _align(self, segments: list[Segment], outcome: WindowOutcome, size: int,
               seek: int) -> tuple[list[Segment] | None, int]:
        """Word timings for a window's segments, then openai's word-based seek and (optionally)
        its skipping of silence around hallucinations; returns the segments kept and the seek."""
        self.align(self._window, size, outcome, segments, self.last_speech)  # type: ignore[misc]
        tokens, begin = outcome.result.tokens, self.tokenizer.timestamp_begin
        single_ending = [t >= begin for t in tokens[-2:]] == [False, True]
        end = last_word_end(segments)
        if not single_ending and end is not None and end > self.seek * FRAME_S:
            seek = round(end * FRAMES_PER_SECOND)  # resume after the last word, not the last timestamp
        threshold = self.options.hallucination_silence_threshold
        kept: list[Segment] | None = segments
        if threshold is not None:
            window = Window(self.seek, size, self.content_frames)
            kept, seek = skip_silence(segments, window, seek, single_ending, self.last_speech, threshold)
            if kept is None:
                return None, seek
        end = last_word_end(kept)
        if end is not None:
            self.last_speech = end
        return kept, seek

    def _segment(self, span: Span, offset: float, outcome: WindowOutcome) -> Segment:
        text = self.tokenizer.decode(span.tokens)
        last_ms = math.floor(self.duration_s * 1000) / 1000  # the last window's padding has no audio
        start = min(round(offset + span.start, 3), last_ms)
        end = min(max(round(offset + span.end, 3), start), last_ms)
        r = outcome.result
        return Segment(
            start=start, end=end, text=text, tokens=list(span.tokens),
            avg_logprob=r.avg_logprob, no_speech_prob=r.no_speech_prob, compression_ratio=r.compression_ratio,
            temperature=r.temperature, kept_frames=outcome.kept_frames, fallback=outcome.fallback,
            seek=self.seek, language=r.language or self.language,
        )

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()
