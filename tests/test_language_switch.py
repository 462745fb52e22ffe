"""Speech after a window's early end is decoded (issue 28.2): base stops writing at a change of
language (English, then German at 31 s of fw-multilingual-en-de.flac), openai's seek took the window
as fully transcribed and the German half was lost, even with `language="de"`.
"""

from __future__ import annotations

import numpy as np
import pytest

from whisper_eas.audio import load_audio
from whisper_eas.decoding import DecodingResult
from whisper_eas.longform import LongformFile, LongformOptions, WindowOutcome
from whisper_eas.vad import hears_speech, vad_available

from conftest import AUDIO, DATA

EN_DE = DATA.parents[1] / ".." / "shared" / "data" / "multilingual" / "audio" / "fw-multilingual-en-de.flac"
needs_vad = pytest.mark.skipif(not vad_available(), reason="needs Silero VAD (the vad extra)")


def _early_end(tiny_runner, audio: np.ndarray, vad: bool) -> int:
    """Accept a first window the model ended at 11 s ("<|0.00|> ... <|11.00|>", end of text); the seek."""
    state = LongformFile.from_samples("x", audio, 80, tiny_runner.tokenizer, LongformOptions(vad_check=vad))
    state.speech_check = hears_speech
    begin = tiny_runner.tokenizer.timestamp_begin
    tokens = [begin, *tiny_runner.tokenizer.encode(" And so my fellow Americans"), begin + 550]
    state.next_window()
    result = DecodingResult(tokens=tokens, text="", avg_logprob=-0.2, no_speech_prob=0.01,
                            compression_ratio=1.0, temperature=0.0)
    state.accept(WindowOutcome(result, 1500, 1500))
    return state.seek


@needs_vad
def test_speech_after_an_early_end_is_decoded_from_the_last_timestamp(tiny_runner):
    audio = np.zeros(16000 * 60, np.float32)
    jfk, cathy = load_audio(str(AUDIO / "jfk-inaugural-1961.flac")), load_audio(str(AUDIO / "cathy-arctic_a0001.flac"))
    audio[: len(jfk)] = jfk
    assert _early_end(tiny_runner, audio, vad=True) == 3000  # nothing after 11 s: openai's seek
    audio[16000 * 20 :][: len(cathy)] = cathy
    assert _early_end(tiny_runner, audio, vad=True) == 1100  # a sentence at 20 s: resume at 11 s
    assert _early_end(tiny_runner, audio, vad=False) == 3000  # openai's rules alone


@needs_vad
@pytest.mark.skipif(not EN_DE.exists(), reason="needs ../shared multilingual data")
def test_the_german_half_is_transcribed_with_language_de(base_runner):
    from whisper_eas.transcribe import Transcriber

    result = Transcriber(base_runner, batch_size=1).transcribe(str(EN_DE), language="de")
    german = " ".join(s.text for s in result.segments if s.start >= 29.0)
    assert "Software" in german and "Genehmigung" in german, result.text
    assert any(s.end > 50 for s in result.segments)


@pytest.mark.skipif(not EN_DE.exists(), reason="needs ../shared multilingual data")
def test_multilingual_detects_each_window_and_says_each_segments_language(base_runner):
    """Detection on the first window alone decodes the German half in English (a translation);
    per window (faster-whisper's multilingual=True) it is German, and each segment says so."""
    from whisper_eas.transcribe import Transcriber

    result = Transcriber(base_runner, batch_size=1).transcribe(str(EN_DE), multilingual=True)
    assert result.language == "en"  # the file's: its first window's
    assert result.segments[0].language == "en" and result.segments[-1].language == "de"
    german = " ".join(s.text for s in result.segments if s.language == "de")
    assert "Software" in german and "Genehmigung" in german, result.text
    assert all("language" in s for s in result.to_dict()["segments"])


def test_multilingual_is_refused_where_it_cannot_apply(tiny_runner):
    from whisper_eas.errors import ConfigError
    from whisper_eas.transcribe import Transcriber

    with pytest.raises(ConfigError, match="multilingual"):
        Transcriber(tiny_runner, longform=LongformOptions(multilingual=True))  # English-only model


def test_cli_refuses_multilingual_with_a_given_language():
    from click.testing import CliRunner

    from whisper_eas.cli.transcribe_cmd import command

    result = CliRunner().invoke(command, [str(AUDIO / "cathy-arctic_a0001.flac"), "--multilingual", "--language", "de"])
    assert result.exit_code == 2 and "--multilingual" in result.output and "--language" in result.output


@needs_vad
def test_every_segment_says_its_language_in_both_modes(tiny_runner):
    from whisper_eas.batched_longform import BatchedOptions
    from whisper_eas.transcribe import Transcriber

    jfk = str(AUDIO / "jfk-inaugural-1961.flac")
    for batched in (None, BatchedOptions()):
        result = Transcriber(tiny_runner, batch_size=1, batched=batched).transcribe(jfk)
        assert result.segments and all(s.language == "en" for s in result.segments), batched
