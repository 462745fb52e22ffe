"""Long-form transcription: the seek/segment rules, fallbacks, batching across files, real audio."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_eas.audio import load_audio
from whisper_eas.decoding import DecodingResult
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.evaluation.wer import word_errors
from whisper_eas.guard import repeated_ngram_loop
from whisper_eas.longform import (
    LongformFile, LongformOptions, WindowOutcome, is_silence, needs_fallback, split_segments,
)
from whisper_eas.outputs import render_srt, render_vtt
from whisper_eas.scheduler import run_lockstep

from conftest import AUDIO, DATA
from subtitles import check_srt, check_vtt

TS = 50000  # a stand-in timestamp_begin for the pure token tests
LONG = AUDIO / "long-cathy-a0001-a0019.flac"
SHORT = [AUDIO / f"{name}.flac" for name in ("jfk-inaugural-1961", "ls-test-clean-1089-134691-0000", "cathy-arctic_a0001")]


def ts(seconds: float) -> int:
    return TS + round(seconds / 0.02)


def result(tokens=(), avg_logprob=-0.2, no_speech_prob=0.01, compression_ratio=1.5, temperature=0.0) -> DecodingResult:
    return DecodingResult(list(tokens), "", avg_logprob, no_speech_prob, compression_ratio, temperature, "en")


# ---- the seek and segment rules (openai/whisper transcribe.py), no model -------------------------

def test_complete_segments_then_lone_timestamp_consume_the_window():
    tokens = [ts(0), 1, 2, ts(4.0), ts(4.0), 3, ts(9.5)]  # then <|endoftext|>: nothing more to say
    spans, advance = split_segments(tokens, TS, 3000)
    assert [(s.start, s.end) for s in spans] == [(0.0, 4.0), (4.0, 9.5)]
    assert advance == 3000
    spans, advance = split_segments(tokens + [ts(12.0)], TS, 3000)  # a new segment opened at 12 s
    assert len(spans) == 2 and advance == 950  # seek to the end of the last complete one


def test_unfinished_last_segment_is_decoded_again_from_its_start():
    tokens = [ts(0), 1, ts(4.0), ts(4.0), 2, ts(27.0), ts(27.0), 3, 4]  # ran out at the window end
    spans, advance = split_segments(tokens, TS, 3000)
    assert [(s.start, s.end) for s in spans] == [(0.0, 4.0), (4.0, 27.0)]
    assert advance == 2700  # mel frames: the next window starts at 27.0 s


def test_window_without_timestamp_pairs_is_one_segment():
    spans, advance = split_segments([ts(0), 1, 2, ts(7.5)], TS, 1200)
    assert [(s.start, s.end) for s in spans] == [(0.0, 7.5)] and advance == 1200
    spans, advance = split_segments([1, 2, 3], TS, 1200)  # without_timestamps
    assert [(s.start, s.end) for s in spans] == [(0.0, 12.0)] and advance == 1200


def test_a_zero_length_first_segment_cannot_stall_the_seek():
    spans, advance = split_segments([ts(0), ts(0), 1, 2, 3], TS, 3000)
    assert advance == 3000 and len(spans) == 1


def test_fallback_and_silence_rules():
    options = LongformOptions()
    assert not needs_fallback(result(), options)
    assert needs_fallback(result(compression_ratio=2.6), options)
    assert needs_fallback(result(avg_logprob=-1.3), options)
    assert not needs_fallback(result(avg_logprob=-1.3, no_speech_prob=0.9), options)  # silence: no retry
    assert is_silence(result(avg_logprob=-1.3, no_speech_prob=0.9), options)
    assert not is_silence(result(avg_logprob=-0.3, no_speech_prob=0.9), options)  # confident text wins
    with pytest.raises(ValueError, match="start at 0.0"):
        LongformOptions(temperatures=(0.2, 0.4)).check()


def test_state_machine_seeks_resets_prompt_and_clamps_to_the_audio(tiny_runner):
    tok = tiny_runner.tokenizer
    begin = tok.timestamp_begin
    samples = load_audio(SHORT[0])[: 16000 * 40 // 4]  # 10 s: one window
    state = LongformFile.from_samples("x", np.tile(samples, 4), 80, tok, LongformOptions())  # 40 s
    assert state.content_frames == 4000 and state.next_window().mel.shape == (80, 3000)
    words = tok.encode(" hello there")
    first = [begin, *words, begin + 500, begin + 500, *words, begin + 1400]  # 0-10 s, 10-28 s, lone 28 s
    state.accept(WindowOutcome(result(first), 750, 1500))
    assert state.seek == 3000 and [(s.start, s.end) for s in state.segments] == [(0.0, 10.0), (10.0, 28.0)]
    assert state.next_window().prompt == tuple(first)  # the previous text conditions the next window
    hot = [begin, *words, begin + 1400]  # 30 + 28 s would pass the 40 s end: clamped
    state.accept(WindowOutcome(result(hot, temperature=0.8), 1500, 1500, fallback="logprob"))
    assert state.done and state.segments[-1].end == pytest.approx(40.0)
    assert state.next_window().prompt == ()  # a hot window resets the conditioning
    assert [w.fallback for w in state.windows] == [None, "logprob"]


def test_one_failing_file_does_not_stop_the_others(tiny_runner):
    tok = tiny_runner.tokenizer

    def opener(seconds):
        return lambda: LongformFile.from_samples(f"f{seconds}", load_audio(SHORT[0])[: 16000 * seconds], 80, tok,
                                                 LongformOptions())

    def decode(requests):
        if len(requests) > 1:
            raise RuntimeError("batch failed")
        if len(requests[0].prompt) == 0 and np.abs(requests[0].mel[:, 300:]).sum() == 0:  # the 2 s file
            raise RuntimeError("this window is cursed")
        return [WindowOutcome(result([tok.timestamp_begin, *tok.encode(" hi"), tok.timestamp_begin + 50]), 750, 1500)]

    def bad_open():
        raise ValueError("bad.wav: not audio")

    jobs = [(0, opener(5)), (1, bad_open), (2, opener(2)), (3, opener(8))]
    finished = {f.key: f for f in run_lockstep(jobs, decode, batch_size=3)}
    assert set(finished) == {0, 1, 2, 3}
    assert finished[0].error is None and finished[3].error is None and finished[0].state.text == "hi"
    assert "not audio" in str(finished[1].error) and "cursed" in str(finished[2].error)


# ---- real audio, tiny.en with a coverage + merge config ------------------------------------------

@pytest.fixture(scope="module")
def transcriber(tiny_runner):
    from whisper_eas.config import PruneConfig
    from prune_configs import COVERAGE
    from whisper_eas.runners.torch_runner import TorchRunner
    from whisper_eas.transcribe import Transcriber

    config = COVERAGE
    assert isinstance(config, PruneConfig)
    runner = TorchRunner("tiny.en", prune=config, hf_model=tiny_runner.model)
    return Transcriber(runner, batch_size=4)


def _compared_inputs():
    """A 36 s two-window cut of the long recording, and short files; two of them as arrays."""
    return [load_audio(LONG)[: 36 * 16000], load_audio(SHORT[0]), *SHORT[1:]]


@pytest.fixture(scope="module")
def batched(transcriber):
    """Index 0: the 60 s recording; 1..4: `_compared_inputs()`, all windows batched across files."""
    transcriber.batch_size = 5
    return {o.index: o for o in transcriber.transcribe_many([LONG, *_compared_inputs()])}


@pytest.fixture(scope="module")
def unbatched(transcriber, batched):
    transcriber.batch_size = 1
    try:
        return {o.index + 1: o for o in transcriber.transcribe_many(_compared_inputs())}
    finally:
        transcriber.batch_size = 5


def test_batched_equals_unbatched(batched, unbatched):
    assert sorted(batched) == [0, 1, 2, 3, 4] and sorted(unbatched) == [1, 2, 3, 4]
    assert len(unbatched[1].result.windows) == 2  # the cut recording needs a second, prompted window
    for i in unbatched:
        a, b = batched[i].result, unbatched[i].result
        assert a.text == b.text
        assert [(s.start, s.end, s.tokens) for s in a.segments] == [(s.start, s.end, s.tokens) for s in b.segments]
        assert [(w.start, w.kept_frames, w.fallback, w.temperature) for w in a.windows] == \
               [(w.start, w.kept_frames, w.fallback, w.temperature) for w in b.windows]


def test_long_recording_has_sane_segments_and_wer(batched, transcriber):
    result = batched[0].result
    sparse_kept = transcriber.runner.prune.keep_count(1500)
    reference = read_manifest(DATA / "manifest-long.tsv")[0]
    assert result.duration_s == pytest.approx(reference.duration_s, abs=0.01)
    assert len(result.windows) >= 2 and result.windows[0].start == 0.0
    assert all(w.kept_frames == (1500 if w.fallback else sparse_kept) for w in result.windows)
    segments = result.segments
    assert len(segments) >= 6
    for previous, segment in zip(segments, segments[1:]):
        assert segment.start >= previous.end - 1e-6
    assert all(0 <= s.start < s.end <= result.duration_s for s in segments)
    assert all(s.end - s.start < 30.0 and s.text.strip() for s in segments)
    assert segments[-1].end > result.duration_s - 8  # reaches the end of the recording
    errors, words = word_errors(reference.text, result.text)
    assert 100 * errors / words < 25.0, result.text
    text_tokens = [t for s in segments for t in s.tokens if t < transcriber.runner.tokenizer.eot]
    assert not repeated_ngram_loop(text_tokens)  # no runaway repetition


def test_short_inputs_and_arrays(batched):
    jfk = batched[2].result
    assert jfk.source == "<array>" and "ask not what your country can do for you" in jfk.text.lower()
    assert batched[3].result.text.strip().lower().startswith("he could wait no longer")
    assert all(o.result.language == "en" for o in batched.values())


def test_subtitles_of_the_long_recording(batched):
    result = batched[0].result
    srt, vtt = check_srt(render_srt(result)), check_vtt(render_vtt(result))
    assert len(srt) == len(vtt) == len(result.segments)
    assert srt[-1][1] == pytest.approx(result.segments[-1].end, abs=1e-3)


def test_scope_whole_trims_whole_clips_and_leaves_long_recordings_dense(tiny_runner):
    """scope="whole" (tiny.en's sequential default): a clip that fits one window is trimmed; the
    windows of a longer recording, in the same rounds, decode on the dense encoder, so its text is
    the dense model's and the guard re-runs none of them for the trim's sake."""
    from whisper_eas.config import PruneConfig
    from whisper_eas.runners.torch_runner import TorchRunner
    from whisper_eas.transcribe import Transcriber

    trim = PruneConfig.parse("uniform L1 k1.0 padding=drop speech_floor=10.0 scope=whole")
    inputs = [LONG, *SHORT[:2]]

    def run(prune):
        runner = TorchRunner("tiny.en", prune=prune, hf_model=tiny_runner.model)
        return {o.index: o.result for o in Transcriber(runner, batch_size=4).transcribe_many(inputs)}

    whole, everywhere, dense = run(trim), run(trim.with_(scope="all")), run(None)
    assert len(whole[0].windows) >= 2
    assert all(w.kept_frames == w.n_frames and w.fallback is None for w in whole[0].windows)
    assert whole[0].text == dense[0].text
    for i in range(1, len(inputs)):
        first = whole[i].windows[0]
        assert first.kept_frames < first.n_frames  # the padding after a clip of under 30 s is dropped
        assert whole[i].text == everywhere[i].text
    with pytest.raises(Exception, match="scope must be one of"):
        trim.with_(scope="some")
