"""A looping decode is cut early (`repetition.py`), only where a hotter try follows, and the cut
keeps the decode's own tokens up to the cut: it only shortens a try the fallback rejects anyway."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import AUDIO
from whisper_eas.decoding import DecodingOptions, decode_batch
from whisper_eas.longform import LongformOptions
from whisper_eas.repetition import RepetitionCut, periodic_tail
from whisper_eas.window_decode import SHORT_FORM, repetition_cut


def test_periodic_tail_needs_a_long_run_of_one_unit():
    unit = [11, 12, 13, 14]
    assert periodic_tail([1, 2, 3] + unit * 8, min_run=32, max_period=48)  # 32 tokens of one unit
    assert not periodic_tail([1, 2, 3] + unit * 7, min_run=32, max_period=48)  # 28: too short
    assert not periodic_tail(list(range(100)), min_run=32, max_period=48)  # no repeats
    assert periodic_tail([5] * 40, min_run=32, max_period=48)
    long_unit = list(range(20))
    assert not periodic_tail(long_unit * 2, min_run=32, max_period=48)  # two units are not a loop
    assert periodic_tail(long_unit * 3, min_run=32, max_period=48)


def test_cut_only_where_a_fallback_follows():
    assert repetition_cut(SHORT_FORM) is None  # one temperature: openai's full-length loop is kept
    assert repetition_cut(LongformOptions(compression_ratio_threshold=None)) is None
    assert repetition_cut(LongformOptions()) == RepetitionCut(2.4)


@pytest.fixture(scope="module")
def looping_window(tiny_runner):
    """A real looping window: 2 s of JFK's speech tiled over 30 s ("And so my fellow ... and so ...")."""
    from whisper_eas.audio import load_audio
    from whisper_eas.features import window_features

    audio = load_audio(AUDIO / "jfk-inaugural-1961.flac")[: 2 * 16000]
    return window_features(np.tile(audio, 14))[None]


@pytest.mark.parametrize("timestamps", [False, True])
def test_a_looping_decode_is_cut_to_a_prefix_that_still_fails_the_rule(tiny_runner, looping_window, timestamps):
    runner = tiny_runner
    encoded = runner.encode(looping_window, dense=True)
    options = DecodingOptions(without_timestamps=not timestamps)
    full = decode_batch(runner.decoder(encoded, 1), 1, runner.tokenizer, options)[0]
    cut = decode_batch(runner.decoder(encoded, 1), 1, runner.tokenizer, options, cut=RepetitionCut(2.4))[0]
    assert full.compression_ratio > 2.4 and len(full.tokens) > 100  # openai's rule rejects the full loop
    assert cut.extra["repetition_cut"] and len(cut.tokens) < 64
    assert cut.tokens == full.tokens[: len(cut.tokens)]  # the same decode, ended early
    assert cut.compression_ratio > 2.4  # so the fallback still runs


def test_speech_is_not_cut(tiny_runner):
    """A full window of read speech (~100 tokens, past the cut's first look) decodes as without it."""
    from whisper_eas.audio import load_audio
    from whisper_eas.features import window_features

    runner = tiny_runner
    mel = window_features(load_audio(AUDIO / "long-cathy-a0001-a0019.flac")[: 30 * 16000])[None]
    encoded = runner.encode(mel, dense=True)
    options = DecodingOptions(without_timestamps=False)
    plain = decode_batch(runner.decoder(encoded, 1), 1, runner.tokenizer, options)[0]
    cut = decode_batch(runner.decoder(encoded, 1), 1, runner.tokenizer, options, cut=RepetitionCut(2.4))[0]
    assert len(plain.tokens) > 64
    assert cut.tokens == plain.tokens and not cut.extra
