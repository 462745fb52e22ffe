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
