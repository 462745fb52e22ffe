"""openai/whisper's hallucination_silence_threshold rules (`hallucination.py`) on hand-made word
timings, and the option's checks in the API and the CLI. The real-audio comparison with
faster-whisper is in test_transcribe_parity.py."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from whisper_eas.cli.transcribe_cmd import command
from whisper_eas.errors import ConfigError
from whisper_eas.hallucination import Window, is_segment_anomaly, last_word_end, skip_silence, word_anomaly_score
from whisper_eas.longform import LongformOptions
from whisper_eas.results import Segment, Word

from conftest import AUDIO


def _segment(start: float, words: list[tuple[float, float, str, float]]) -> Segment:
    ws = [Word(s, e, w, p) for s, e, w, p in words]
    return Segment(start=start, end=ws[-1].end if ws else start, text="".join(w.word for w in ws), words=ws)


def _speech(start: float, n: int = 4) -> Segment:
    """n ordinary words: 0.3 s each, confident."""
    return _segment(start, [(start + 0.3 * i, start + 0.3 * (i + 1), f" w{i}", 0.9) for i in range(n)])


def _hallucination(start: float) -> Segment:
    """Two improbable words (openai's anomaly: score >= one per word)."""
    return _segment(start, [(start, start + 0.1, " you", 0.05), (start + 0.1, start + 0.2, ".", 0.05)])


def test_word_anomaly_scores_as_openai():
    assert word_anomaly_score(Word(0.0, 0.5, " fine", 0.9)) == 0.0
    assert word_anomaly_score(Word(0.0, 0.5, " unsure", 0.1)) == 1.0
    assert word_anomaly_score(Word(0.0, 0.033, " short", 0.9)) == pytest.approx(1.5)
    assert word_anomaly_score(Word(0.0, 3.0, " long", 0.9)) == pytest.approx(1.0)
    assert not is_segment_anomaly(_speech(1.0)) and is_segment_anomaly(_hallucination(1.0))
    assert not is_segment_anomaly(None)
    punctuation_only = _segment(0.0, [(0.0, 0.01, ".", 0.01), (0.5, 1.0, " ok", 0.9)])
    assert not is_segment_anomaly(punctuation_only)  # '.' is not scored; ' ok' is one normal word


def test_hallucination_between_silences_is_dropped():
    window = Window(previous_seek=0, segment_size=3000, content_frames=6000)
    segments = [_speech(0.5), _hallucination(12.0), _speech(20.0)]
    kept, seek = skip_silence(segments, window, 3000, True, last_speech=0.0, threshold=2.0)
    assert kept == segments[:1] and seek == 1200  # the next window starts at the hallucination
    kept, seek = skip_silence(segments, window, 3000, True, last_speech=0.0, threshold=10.0)
    assert kept == segments and seek == 3000  # 7.3 s of silence before it is under 10 s: kept


def test_leading_silence_before_a_hallucination_skips_the_window():
    window = Window(previous_seek=1000, segment_size=3000, content_frames=9000)
    kept, seek = skip_silence([_hallucination(16.0), _speech(20.0)], window, 4000, True, 0.0, 2.0)
    assert kept is None and seek == 1000 + 600  # openai's `continue`: past the 6 s of leading silence


def test_unfinished_window_resumes_after_the_last_word_when_silence_follows():
    window = Window(previous_seek=0, segment_size=3000, content_frames=6000)
    segments = [_speech(1.0), _speech(5.0)]
    assert last_word_end(segments) == pytest.approx(6.2)
    _, seek = skip_silence(segments, window, 500, False, 0.0, 2.0)
    assert seek == 620  # 23.8 s of the window left after the last word: resume there
    _, seek = skip_silence([_speech(1.0), _speech(27.5)], window, 500, False, 0.0, 2.0)
    assert seek == 3000  # under 2 s left: the whole window counts as read


def test_threshold_needs_word_timestamps():
    with pytest.raises(ConfigError, match="word_timestamps"):
        LongformOptions(hallucination_silence_threshold=2.0)
    with pytest.raises(ConfigError, match="positive"):
        LongformOptions(word_timestamps=True, hallucination_silence_threshold=0.0)
    assert LongformOptions(word_timestamps=True, hallucination_silence_threshold=2.0)


@pytest.mark.parametrize("flag", [["--highlight-words"], ["--hallucination-silence-threshold", "2"]])
def test_word_flags_need_word_timestamps(flag):
    result = CliRunner().invoke(command, [str(AUDIO / "jfk-inaugural-1961.flac"), *flag])
    assert result.exit_code == 2 and "needs --word-timestamps" in result.output
