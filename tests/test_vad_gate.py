"""The sequential mode's VAD gate (`vad_filter`, issue 26): non-speech is never decoded, speech keeps
its recording times. Real weights (tiny.en), real Silero VAD, a real speech-dev sentence."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from whisper_eas.audio import load_audio
from whisper_eas.results import Segment, Word
from whisper_eas.vad import SpeechSpan, vad_available
from whisper_eas.vad_gate import SpeechMap

from conftest import AUDIO

SR = 16000
SENTENCE = AUDIO / "cathy-arctic_a0001.flac"  # "Author of the danger trail, Philip Steels, etc." (3.3 s)
needs_vad = pytest.mark.skipif(not vad_available(), reason="needs Silero VAD (the vad extra)")


def test_speech_times_map_back_past_the_removed_silence():
    """Spans 1-2 s and 4-5 s: speech time 0.5 is 1.5 s, 1.5 is 4.5 s; an end at the first span's end
    stays in it (2.0, not 4.0); a word is resolved in the span of its middle (faster-whisper's rule)."""
    speech_map = SpeechMap((SpeechSpan(SR, 2 * SR), SpeechSpan(4 * SR, 5 * SR)), 6 * SR)
    assert speech_map.original(0.5) == 1.5 and speech_map.original(1.5) == 4.5
    assert speech_map.original(1.0, is_end=True) == 2.0 and speech_map.original(1.0) == 4.0
    segment = speech_map.restore(Segment(start=0.2, end=1.0, text=" a"))
    assert (segment.start, segment.end) == (1.2, 2.0)
    words = [Word(0.1, 0.4, " a", 0.9), Word(0.9, 1.3, " b", 0.9)]  # the second's middle (1.1) is in span 2
    segment = speech_map.restore(Segment(start=0.1, end=1.3, text=" a b", words=words))
    assert [(w.start, w.end) for w in segment.words] == [(1.1, 1.4), (3.9, 4.3)]
    assert (segment.start, segment.end) == (1.1, 4.3)


@pytest.fixture(scope="module")
def gated(tiny_runner):
    from whisper_eas.transcribe import Transcriber

    return Transcriber(tiny_runner, batch_size=1).with_settings(vad_filter=True)


def _non_speech() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"near-silence 30 s": (rng.standard_normal(30 * SR) * 1e-3).astype(np.float32),
            "440 Hz tone 10 s": (0.1 * np.sin(2 * np.pi * 440 * np.arange(10 * SR) / SR)).astype(np.float32),
            "noise 8 s": (rng.standard_normal(8 * SR) * 3e-2).astype(np.float32),
            "noise 50 ms": (rng.standard_normal(SR // 20) * 1e-2).astype(np.float32)}


@needs_vad
def test_non_speech_is_never_decoded(gated):
    """Silence, a tone and noise: no segment and no window decoded (one VAD pass is all they cost);
    the result still gives the recording's duration."""
    for name, clip in _non_speech().items():
        result = gated.transcribe(clip)
        assert result.segments == [] and result.windows == [], name
        assert result.duration_s == pytest.approx(len(clip) / SR), name


@needs_vad
@pytest.mark.parametrize("at", [5.0, 29.0, 47.5])
def test_a_sentence_in_noise_keeps_its_recording_time(gated, at):
    """The sentence alone is decoded, and its segment sits where it is in the recording (a lead-in
    of non-speech shorter than 2 s is kept, as a pause inside speech is)."""
    sentence = load_audio(str(SENTENCE))
    audio = (np.random.default_rng(1).standard_normal(60 * SR) * 3e-3).astype(np.float32)
    audio[int(at * SR) :][: len(sentence)] += sentence
    result = gated.transcribe(audio)
    assert len(result.segments) == 1 and "danger trail" in result.text.lower(), result.text
    segment = result.segments[0]
    assert at - 0.5 <= segment.start <= at + 1.0 and at + 2.5 <= segment.end <= at + len(sentence) / SR + 0.6, \
        (segment.start, segment.end)
    assert len(result.windows) == 1 and at - 0.5 <= result.windows[0].start <= at + 0.5


@needs_vad
def test_speech_without_silence_is_unchanged(tiny_runner, gated):
    """A clip that is speech throughout is decoded as without the gate (same text)."""
    from whisper_eas.transcribe import Transcriber

    plain = Transcriber(tiny_runner, batch_size=1).with_settings(vad_filter=False)
    assert gated.transcribe(str(SENTENCE)).text == plain.transcribe(str(SENTENCE)).text


@needs_vad
def test_the_gate_is_the_default_where_the_vad_is_installed(tiny_runner):
    """No setting named: a tone costs no window; vad_filter=False decodes it (and says nothing)."""
    from whisper_eas.transcribe import Transcriber

    transcriber = Transcriber(tiny_runner, batch_size=1)
    tone = _non_speech()["440 Hz tone 10 s"]
    assert transcriber.transcribe(tone).windows == []
    assert len(transcriber.transcribe(tone, vad_filter=False).windows) == 1


@needs_vad
def test_cli_vad_filter(tmp_path):
    """`trt-transcribe` (the gate by default) prints nothing for a tone and the sentence for speech;
    `--no-vad-filter` turns it off; a digital-silence file is still the clear audio error it is
    without the gate."""
    from click.testing import CliRunner

    from whisper_eas.cli.transcribe_cmd import command

    tone = tmp_path / "tone.wav"
    sf.write(tone, _non_speech()["440 Hz tone 10 s"], SR)
    zeros = tmp_path / "zeros.wav"
    sf.write(zeros, np.zeros(SR, np.float32), SR)
    run = CliRunner().invoke(command, [str(tone), str(SENTENCE), "--backend", "pytorch"])
    assert run.exit_code == 0, run.output
    assert "danger trail" in run.stdout.lower() and "thanks" not in run.stdout.lower(), run.stdout
    run = CliRunner().invoke(command, [str(SENTENCE), "--no-vad-filter", "--backend", "pytorch"])
    assert run.exit_code == 0 and "danger trail" in run.stdout.lower(), run.output
    run = CliRunner().invoke(command, [str(zeros), "--vad-filter", "--backend", "pytorch"])
    assert run.exit_code == 1 and "digital silence" in run.output, run.output


@needs_vad
def test_only_non_speech_of_two_seconds_or_more_is_cut():
    """A 1 s lead-in is kept (faster-whisper cuts it, shifting every window for nothing); a 3 s
    tail is cut down to the padding after the speech."""
    from whisper_eas.vad_gate import gate

    sentence = load_audio(str(SENTENCE))
    rng = np.random.default_rng(2)
    audio = np.concatenate([rng.standard_normal(SR) * 1e-3, sentence, rng.standard_normal(3 * SR) * 1e-3])
    speech, speech_map = gate(audio.astype(np.float32))
    assert len(speech_map.spans) == 1 and speech_map.spans[0].start == 0
    assert SR + len(sentence) <= speech_map.spans[0].end <= SR + len(sentence) + SR
    assert len(speech) == speech_map.spans[0].end


@needs_vad
def test_the_gate_streams_what_the_whole_file_gives(monkeypatch):
    """The VAD runs over a stream a few minutes at a time (state and context carried) and the
    decoder reads the speech spans from a second pass: the same probabilities and the same speech
    samples as the whole file in memory, so a long recording's memory does not grow with it."""
    from whisper_eas.audio import AudioStream
    from whisper_eas.vad import SileroVad, default_vad
    from whisper_eas.vad_gate import gate, speech_stream

    rng = np.random.default_rng(3)
    sentence = load_audio(str(SENTENCE))
    parts = [rng.standard_normal(5 * SR) * 1e-3, sentence, rng.standard_normal(7 * SR) * 1e-3, sentence,
             rng.standard_normal(2 * SR) * 1e-3]
    audio = np.concatenate(parts).astype(np.float32)
    blocks = [audio[i : i + 4000] for i in range(0, len(audio), 4000)]
    vad = SileroVad()
    whole = vad.probabilities(audio)
    monkeypatch.setattr(SileroVad, "STREAM_ROWS", 97)  # ~3 s per run: many runs, a part of a row left over
    streamed, count = default_vad().stream_probabilities(iter(blocks))
    assert count == len(audio) and np.array_equal(streamed, whole)
    stream = AudioStream("mix", lambda: iter(blocks))
    gated, speech_map = speech_stream(stream)
    speech, expected_map = gate(audio)
    assert speech_map == expected_map and len(speech_map.spans) == 2
    assert np.array_equal(np.concatenate(list(gated.blocks())), speech)


@needs_vad
def test_the_vad_over_five_minutes_holds_little_memory():
    """Silero over 5 min of audio in a fresh process: the most resident memory the runs add is a
    few tens of MB (runs of 20 s; ONNX Runtime's arena keeps the largest run's buffers, and runs of
    5 min held ~200 MB more), and the probabilities equal one run's over the whole array."""
    import subprocess
    import sys

    script = """
import resource
import numpy as np
from whisper_eas.vad import SileroVad
audio = (np.random.default_rng(0).standard_normal(300 * 16000) * 0.01).astype(np.float32)
vad = SileroVad()
vad.probabilities(audio[: 16000 * 20])  # sessions warm on one run's size
opened = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
probs = vad.probabilities(audio)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - opened
SileroVad.STREAM_ROWS = 10 ** 6
whole = vad.probabilities(audio)
print(grown // 1024, int(np.array_equal(probs, whole)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    grown_mb, same = map(int, done.stdout.split())
    assert same == 1
    assert grown_mb < 60, f"the VAD's runs over 5 min added {grown_mb} MB"
