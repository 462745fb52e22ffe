"""Batched mode's fallback cost (issue 26 item 3): a chunk that falls back samples one candidate per
temperature (`BatchedOptions.fallback_best_of=1`), not `best_of` (5), so it no longer holds its batch
for seconds; `fallback_best_of=None` keeps the decoding options' best_of."""

from __future__ import annotations

import pytest

from whisper_eas.batched_longform import BatchedOptions
from whisper_eas.errors import ConfigError
from whisper_eas.vad import vad_available

from conftest import AUDIO

SENTENCE = AUDIO / "cathy-arctic_a0001.flac"


def _groups(runner, monkeypatch, batched: BatchedOptions) -> tuple[list[int], str]:
    """Rows per window of every decoder session the file opens (real decoding, recorded on the way),
    with every window forced to fall back (no avg_logprob is above 0)."""
    from whisper_eas.transcribe import Transcriber

    groups: list[int] = []
    real = runner.decoder

    def recording(encoded, group=1):
        groups.append(group)
        return real(encoded, group)

    monkeypatch.setattr(runner, "decoder", recording)
    transcriber = Transcriber(runner, batch_size=4, batched=batched)
    result = transcriber.transcribe(str(SENTENCE), logprob_threshold=0.0, temperature=(0.0, 0.5))
    return groups, result.text


@pytest.mark.skipif(not vad_available(), reason="needs Silero VAD (the vad extra)")
def test_fallback_samples_one_candidate_per_temperature(tiny_runner, monkeypatch):
    groups, text = _groups(tiny_runner, monkeypatch, BatchedOptions())
    assert groups and set(groups) == {1}, groups  # greedy, then one sample at 0.5
    assert len(groups) == 2 and "trail" in text.lower()
    groups, _ = _groups(tiny_runner, monkeypatch, BatchedOptions(fallback_best_of=None))
    assert groups == [1, 5], groups  # the Transcriber's best_of=5 (openai's CLI) when not capped


def test_fallback_best_of_is_checked():
    with pytest.raises(ConfigError, match="fallback_best_of"):
        BatchedOptions(fallback_best_of=0).check()


def test_windows_that_fall_back_are_sampled_together_with_the_texts_they_get_alone(dense_dir):
    """Every window forced to fall back (no avg_logprob is above 0). With one sample per try, four
    windows decoded together open one decoder session per temperature, not one per window and
    temperature; with two samples per try, two windows per session (a sampling decode holds no
    more rows than the greedy pass: each row holds its own cross keys/values). Either way each
    window's samples (its own seed) are exactly those it gets when decoded alone."""
    import numpy as np

    from whisper_eas.audio import load_audio
    from whisper_eas.decoding import DecodingOptions
    from whisper_eas.evaluation.manifest import read_manifest
    from whisper_eas.features import window_features
    from whisper_eas.longform import LongformOptions, WindowRequest
    from whisper_eas.runners.ort_runner import OrtRunner
    from whisper_eas.window_decode import decode_windows

    from conftest import DATA

    runner = OrtRunner(dense_dir)
    utts = read_manifest(DATA / "manifest.tsv")[:4]
    requests = [WindowRequest(window_features(load_audio(u.path)), (), "en", seed=i) for i, u in enumerate(utts)]
    longform = LongformOptions(temperatures=(0.0, 0.4, 0.8), logprob_threshold=0.0)
    sessions: list[tuple[int, int]] = []
    real = runner.decoder

    def recording(encoded, group=1):
        sessions.append((encoded.batch, group))
        return real(encoded, group)

    runner.decoder = recording
    for best_of, expected in ((1, [(4, 1)] * 3), (2, [(4, 1)] + [(2, 2)] * 4)):
        options = DecodingOptions(language="en", best_of=best_of)
        sessions.clear()
        together = decode_windows(runner, requests, options, longform)
        assert sessions == expected, (best_of, sessions)  # greedy, then the samples at 0.4 and at 0.8
        alone = [decode_windows(runner, [request], options, longform)[0] for request in requests]
        assert [o.result.temperature for o in together] == [0.8] * 4
        assert [o.result.text for o in together] == [o.result.text for o in alone]
        assert [o.result.tokens for o in together] == [o.result.tokens for o in alone]
        assert np.allclose([o.result.avg_logprob for o in together], [o.result.avg_logprob for o in alone],
                           atol=1e-4)
