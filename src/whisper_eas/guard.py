"""Quality guard: spot a sparsified window whose output looks degenerate, so it can be re-run dense.

The thresholds are openai/whisper's fallback thresholds (gzip compression ratio 2.4, average
log-probability -1.0) plus an explicit repeated n-gram check, which catches short loops that
do not yet compress well ("much, much, much, much"), and a repeated-span check: a window whose
text says again a run of `repeat_span_words` words that it, or the file's text just before it (the
window's previous-text prompt), already said. With timestamps, a pruned window can decode its whole
sentence, then decode it again as a second segment, or, after the seek, as the next window of the
same short file; two copies compress too little for the ratio to notice. Dense base transcripts on
speech-dev never repeat a span of 8 words (at most 3 in short clips, 6 in 30 s windows and in
whole long recordings); the repeats seen in pruned windows were 11 to 22 words long
(docs/results.md, section 0).

With timestamps, a pruned window can also leave its last segment unfinished although the file's
audio ends inside the window: the next window then covers only the file's last seconds, and there a
decoder prompted with the text so far says it again (the same repeat, one window later, where a
dense re-run of that tail repeats too). `unfinished_end` re-runs the first window instead: a
sparse window that holds the end of the file's audio but does not end its text with a lone
timestamp. Dense decoding needed a second window on 3 of 158 speech-dev short files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from whisper_eas.decoding import DecodingResult
from whisper_eas.errors import ConfigError


@dataclass(frozen=True)
class GuardOptions:
    """When a sparsified window's output counts as degenerate."""

    enabled: bool = True
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    max_ngram: int = 10  # longest n-gram checked for loops
    min_repeats: int = 4  # an n-gram repeated this many times in a row...
    min_loop_tokens: int = 8  # ...and spanning at least this many tokens is a loop
    # A window that says again a run of this many words (said earlier in it or in its previous-text
    # prompt, the copies not overlapping) is a repeat; None: off.
    repeat_span_words: int | None = 8
    # A timestamped window that holds the end of the file's audio but leaves its last segment unfinished.
    unfinished_end: bool = True
    # A language detected on a pruned encoding with a top probability below this is detected again
    # on the dense encoding (multilingual models; docs/results.md, "Language identification").
    language_min_prob: float = 0.8

    def __post_init__(self) -> None:
        for name in ("compression_ratio_threshold", "logprob_threshold"):
            value = getattr(self, name)
            if value is not None and value != value:
                raise ConfigError(f"guard {name} must be a number or None, got {value}")
        if self.max_ngram < 1 or self.min_repeats < 2 or self.min_loop_tokens < 1:
            raise ConfigError(f"guard loop check needs max_ngram >= 1, min_repeats >= 2, min_loop_tokens >= 1; "
                              f"got {self.max_ngram}, {self.min_repeats}, {self.min_loop_tokens}")
        if self.repeat_span_words is not None and self.repeat_span_words < 2:
            raise ConfigError(f"guard repeat_span_words must be >= 2 or None, got {self.repeat_span_words}")
        if not 0.0 <= self.language_min_prob <= 1.0:
            raise ConfigError(f"guard language_min_prob must be within [0, 1], got {self.language_min_prob}")


def repeated_ngram_loop(tokens: list[int], max_ngram: int = 10, min_repeats: int = 4, min_span: int = 8) -> bool:
    """True when some n-gram (n <= max_ngram) repeats back to back min_repeats times over min_span tokens."""
    size = len(tokens)
    for n in range(1, max_ngram + 1):
        needed = max(min_repeats, -(-min_span // n))
        if needed * n > size:
            break
        for phase in range(n):  # a loop may start at any offset
            run = 1
            for start in range(phase + n, size - n + 1, n):
                run = run + 1 if tokens[start : start + n] == tokens[start - n : start] else 1
                if run >= needed:
                    return True
    return False


_WORD = re.compile(r"\w+(?:'\w+)*")


def repeated_span(text: str, min_words: int = 8, previous: str = "") -> bool:
    """True when `text` says a run of `min_words` words that came earlier in `text` or in
    `previous` (the text just before it), the two copies not overlapping.

    Words are compared lower-cased, punctuation dropped, so "Agenda. He said" matches "agenda he
    said". Any longer repeated span contains a repeated run of exactly `min_words` words, so
    checking that length is enough; only copies that start within `text` count."""
    before = _WORD.findall(previous.lower())
    words = before + _WORD.findall(text.lower())
    first: dict[tuple[str, ...], int] = {}
    for start in range(len(words) - min_words + 1):
        span = tuple(words[start : start + min_words])
        seen = first.setdefault(span, start)
        if start >= len(before) and start - seen >= min_words:
            return True
    return False


def unfinished_ending(tokens: list[int], timestamp_begin: int) -> bool:
    """True when timestamped tokens do not end in a lone timestamp ("<|t1|> text <|t2|>"): the last
    segment is unfinished, so long-form decoding seeks back and decodes its speech again."""
    stamps = [t >= timestamp_begin for t in tokens]
    return any(stamps) and stamps[-2:] != [False, True]


def degenerate_reason(result: DecodingResult, guard: GuardOptions, previous: str | Callable[[], str] = "", *,
                      timestamp_begin: int | None = None, audio_ends: bool = False) -> str | None:
    """Why `result` looks degenerate ('compression', 'logprob', 'loop', 'repeat', 'unfinished'), or None.
    `previous`: the text the window was prompted with (the file's text before it), or how to get
    it: only the repeat check reads it, so a window caught earlier never decodes its prompt;
    `audio_ends`: the file's audio ends inside this window; `timestamp_begin`: the first timestamp token."""
    if guard.compression_ratio_threshold is not None and result.compression_ratio > guard.compression_ratio_threshold:
        return "compression"
    if guard.logprob_threshold is not None and result.avg_logprob < guard.logprob_threshold:
        return "logprob"
    if repeated_ngram_loop(result.tokens, guard.max_ngram, guard.min_repeats, guard.min_loop_tokens):
        return "loop"
    if guard.repeat_span_words is not None and repeated_span(
            result.text, guard.repeat_span_words, previous() if callable(previous) else previous):
        return "repeat"
    if guard.unfinished_end and audio_ends and timestamp_begin is not None \
            and unfinished_ending(result.tokens, timestamp_begin):
        return "unfinished"
    return None
