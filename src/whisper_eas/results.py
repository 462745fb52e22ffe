"""What a transcription returns: segments with times, per-window details, the whole result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Word:
    """One word with its time span in seconds (cross-attention alignment, `word_timestamps=True`).

    `word` keeps its leading space, as openai/whisper's and faster-whisper's words do; `probability`
    is the mean probability of its tokens.
    """

    start: float
    end: float
    word: str
    probability: float


@dataclass
class Segment:
    """A stretch of text with its time span in seconds (text keeps Whisper's leading space)."""

    start: float
    end: float
    text: str
    tokens: list[int] = field(default_factory=list)  # includes the timestamp tokens, as openai/whisper's do
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0
    kept_frames: int = 1500  # encoder frames the decoder attended to for this segment's window
    fallback: str | None = None  # why the guard re-ran the window dense, if it did
    id: int = 0
    seek: int = 0  # mel frame (10 ms) where the segment's window started
    words: list[Word] | None = None  # with `word_timestamps=True`
    language: str | None = None  # the language its window was decoded in (per window with `multilingual=True`)


@dataclass
class WindowInfo:
    """One decoded 30 s window: where it started, what the encoder kept, which fallbacks ran."""

    start: float  # seconds
    duration: float  # seconds of audio in the window (the rest is padding)
    kept_frames: int
    n_frames: int
    temperature: float
    fallback: str | None  # guard reason for the clean re-run (dense encoder, exact step)
    skipped: bool = False  # judged silent (no-speech probability) and left out


@dataclass
class TranscriptionResult:
    """Everything known about one transcribed input.

    `text` is the segments' texts joined and stripped of the surrounding whitespace:
    `"".join(s.text for s in segments).strip()`. (openai/whisper keeps the first segment's
    leading space; `Segment.text` keeps it here too, so that join reproduces openai's text.)
    """

    source: str
    text: str
    segments: list[Segment]
    language: str | None
    duration_s: float
    model: str
    backend: str
    device: str
    prune: dict | None
    windows: list[WindowInfo] = field(default_factory=list)
    timing: dict = field(default_factory=dict)
    # top language's probability where it was detected; 1.0 where it was given or the model is
    # English-only (as faster-whisper); None where nothing was decoded to detect it on
    language_prob: float | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. "partial decode: ..." (--allow-partial)
    options: dict = field(default_factory=dict)  # the decoding, long-form and guard settings used

    @property
    def language_probability(self) -> float | None:
        """faster-whisper's name for `language_prob`."""
        return self.language_prob

    def to_dict(self) -> dict:
        return asdict(self)
