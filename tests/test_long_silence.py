"""Speech inside long silence is transcribed (issue 28): a real sentence at two offsets of 2 min of
digital silence, near-silence or a tone, on both backends, in the default sequential mode.

Before the fix, tiny.en heard a confident " you" in each silent window (openai's rule keeps it:
no-speech probability 0.95 but avg_logprob -0.76 > -1), the next windows were prompted with it and
the window holding the sentence was decoded as more "you": the sentence at 60 s was lost.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from whisper_eas.audio import load_audio
from whisper_eas.decoding import DecodingResult
from whisper_eas.longform import LongformFile, LongformOptions, WindowOutcome

from conftest import AUDIO

SENTENCE = AUDIO / "cathy-arctic_a0001.flac"  # "Author of the danger trail, Philip Steels, etc." (3.3 s)
TOTAL_S = 120
OFFSETS = (60.0, 77.0)  # at a window's start (lost before the fix) and inside a window


def _clip(background: str, at: float) -> np.ndarray:
    n = TOTAL_S * 16000
    if background == "silence":
        audio = np.zeros(n, np.float32)
    elif background == "near-silence":
        audio = (np.random.default_rng(0).standard_normal(n) * 1e-3).astype(np.float32)
    else:  # a 440 Hz tone
        audio = (0.05 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)
    sentence = load_audio(str(SENTENCE))
    start = int(at * 16000)
    audio[start : start + len(sentence)] += sentence
    return audio


def _check(result, at: float) -> None:
    text = result.text.lower()
    assert "danger trail" in text, (at, result.text)
    heard = [s for s in result.segments if "danger" in s.text.lower()]
    # tiny.en stamps a lone sentence loosely (60.0-80.24 for 77.0-80.3): its segment must cover it
    assert heard and heard[0].start <= at + 0.5 and heard[0].end >= at + 1.0, [(s.start, s.end, s.text)
                                                                               for s in result.segments]


@pytest.fixture(scope="module")
def torch_transcriber(tiny_runner):
    from whisper_eas.transcribe import Transcriber

    return Transcriber(tiny_runner, batch_size=1)


@pytest.fixture(scope="module")
def ort_transcriber(dense_dir):
    pytest.importorskip("onnxruntime")
    from whisper_eas.runners.ort_runner import OrtRunner
    from whisper_eas.transcribe import Transcriber

    return Transcriber(OrtRunner(dense_dir), batch_size=1)


@pytest.mark.parametrize("at", OFFSETS)
def test_sentence_in_silence_pytorch(torch_transcriber, at):
    _check(torch_transcriber.transcribe(_clip("silence", at)), at)


@pytest.mark.parametrize("at", OFFSETS)
def test_sentence_in_silence_onnxruntime(ort_transcriber, at):
    _check(ort_transcriber.transcribe(_clip("silence", at)), at)


@pytest.mark.parametrize("background", ["near-silence", "tone"])
def test_sentence_in_near_silence_and_tone(torch_transcriber, background):
    for at in OFFSETS:
        _check(torch_transcriber.transcribe(_clip(background, at)), at)


def test_text_the_model_calls_no_speech_does_not_prompt_the_next_window(tiny_runner):
    """A kept window whose no-speech probability is above the threshold resets the prompt, as a
    hot fallback does; a speech window's text still conditions the next one."""
    quiet = (np.random.default_rng(0).standard_normal(16000 * 70) * 1e-3).astype(np.float32)
    state = LongformFile.from_samples("x", quiet, 80, tiny_runner.tokenizer,
                                      LongformOptions())
    you = tiny_runner.tokenizer.encode(" you")
    begin = tiny_runner.tokenizer.timestamp_begin

    def accept(no_speech_prob: float) -> None:
        tokens = [begin, *you, begin + 100, begin + 100]  # "<|0.00|> you <|2.00|><|2.00|>"
        result = DecodingResult(tokens=tokens, text=" you", avg_logprob=-0.5, no_speech_prob=no_speech_prob,
                                compression_ratio=1.0, temperature=0.0)
        state.accept(WindowOutcome(result, 1500, 1500))

    accept(0.95)  # kept (confident), but the model says no speech
    assert state.segments and state.next_window().prompt == ()
    accept(0.1)
    assert state.next_window().prompt == (begin, *you, begin + 100)  # the segment's tokens
    assert isinstance(state.next_window().mel, torch.Tensor)
