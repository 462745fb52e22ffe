"""Cutting a decode that is stuck repeating itself: the fallback will reject it anyway; and the
compression ratio that fallback (and the guard) reads.

A window that falls into a loop ("I said no. I said no. ...") decodes to the sample length
(224 tokens), is then rejected by openai/whisper's compression-ratio rule and decoded again at
the next temperature, where it often loops again; in a batch every other window waits for it.
On a non-native speech-val recording one such window cost 8 of 11 s of a batched tiny.en run.

A row is cut (given end-of-text) once its text so far already fails the compression-ratio rule
*and* its last text tokens repeat one unit over a long run, so the cut decode fails the same rule
the full one would have. A window that fails at every temperature keeps its cut last try: fewer
repeated words than openai's 224-token loop. Used only where a fallback follows (long-form
temperatures), so single-temperature decodes (search, short-form timing) are unchanged.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class RepetitionCut:
    """When a row counts as stuck: the fallback's ratio exceeded and a periodic tail."""

    compression_ratio: float  # the fallback rule's threshold (`LongformOptions.compression_ratio_threshold`)
    min_tokens: int = 48  # text tokens before a row is looked at
    min_run: int = 32  # text tokens the repeating tail must span (and at least three units)
    max_period: int = 48  # longest repeating unit, in tokens
    every: int = 8  # steps between looks (decoding the text costs ~20 us a row)

    def due(self, generated: int) -> bool:
        """Whether to look at this step (`generated`: tokens sampled so far)."""
        return generated >= self.min_tokens and generated % self.every == 0

    def is_stuck(self, text_tokens: list[int], decode: Callable[[list[int]], str]) -> bool:
        """A row's text tokens so far (timestamps left out); `decode` makes them text, as the
        fallback rule reads it."""
        if len(text_tokens) < self.min_tokens or not periodic_tail(text_tokens, self.min_run, self.max_period):
            return False
        return compression_ratio(decode(text_tokens).strip()) > self.compression_ratio


def compression_ratio(text: str) -> float:
    """Bytes over zlib-compressed bytes, as openai/whisper and faster-whisper compute it: loops of
    repeated text compress well and score high. (gzip's 18-byte header would lower short texts'
    ratios, e.g. 2.28 instead of 4.38, so the 2.4 threshold would rarely fire.)"""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def periodic_tail(tokens: list[int], min_run: int, max_period: int) -> bool:
    """Whether the sequence ends with some unit of at most `max_period` tokens repeated over at
    least `min_run` tokens and three times."""
    values = np.asarray(tokens)
    for period in range(1, min(max_period, len(values) // 3) + 1):
        same = values[period:] == values[:-period]  # position i + period repeats position i
        run = len(same) if same.all() else len(same) - 1 - int(np.flatnonzero(~same)[-1])
        if run + period >= max(min_run, 3 * period):
            return True
    return False
