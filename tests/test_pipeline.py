"""The one window-decoding pipeline (`window_decode.decode_windows`) and the guard, on real weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from whisper_eas.decoding import DecodingOptions, DecodingResult
from whisper_eas.guard import GuardOptions, degenerate_reason
from whisper_eas.longform import LongformOptions
from whisper_eas.repetition import compression_ratio
from whisper_eas.window_decode import SHORT_FORM, decode_windows, window_requests

from conftest import AUDIO, DATA


@pytest.fixture(scope="module")
def multilingual_tokenizer():
    from whisper_eas.checkpoints.registry import resolve_model
    from whisper_eas.tokenizer import WhisperTokenizer

    return WhisperTokenizer.from_file(resolve_model("base") / "tokenizer.json", multilingual=True)


@pytest.mark.parametrize("text", ["我们今天去公园。" * 12, "감사합니다 " * 20, "ありがとうございます。" * 10,
                                  " much, much," * 12, "今日は" * 8])
def test_guard_catches_runaway_output_in_any_language(multilingual_tokenizer, text):
    """Loops are caught in CJK scripts too: by the compression ratio where they compress (UTF-8 CJK
    text of normal speech compresses *less* than English, ~1.0-1.2 vs ~1.3), else by the token loop."""
    result = DecodingResult(multilingual_tokenizer.encode(text), text, avg_logprob=-0.1, no_speech_prob=0.0,
                            compression_ratio=compression_ratio(text), temperature=0.0)
    assert degenerate_reason(result, GuardOptions()) in ("compression", "loop")


@pytest.mark.parametrize("text", ["广州市房地产中介协会分析，今年以来房价上涨的主要原因是供应不足。",
                                  "오늘은 날씨가 정말 좋네요. 내일은 비가 올지도 모르니까 우산을 가지고 가세요.",
                                  "今日はとても良い天気ですね。明日は雨が降るかもしれません。"])
def test_guard_leaves_normal_cjk_text_alone(multilingual_tokenizer, text):
    result = DecodingResult(multilingual_tokenizer.encode(text), text, avg_logprob=-0.3, no_speech_prob=0.0,
                            compression_ratio=compression_ratio(text), temperature=0.0)
    assert result.compression_ratio < 1.5 and degenerate_reason(result, GuardOptions()) is None


def test_guard_options_are_validated():
    with pytest.raises(ValueError, match="language_min_prob"):
        GuardOptions(language_min_prob=1.5)
    with pytest.raises(ValueError, match="min_repeats"):
        GuardOptions(min_repeats=1)


def test_short_form_is_long_form_with_one_window_and_one_temperature(tiny_runner):
    """The Transcriber (LongformFile + scheduler) decodes a short file exactly as `decode_windows`
    decodes that file's one window with one temperature."""
    from whisper_eas.audio import load_audio
    from whisper_eas.evaluation.manifest import read_manifest
    from whisper_eas.longform import LongformFile
    from whisper_eas.transcribe import Transcriber

    utterances = read_manifest(DATA / "manifest.tsv")[:3]
    options = DecodingOptions(language="en")
    one = LongformOptions(temperatures=(0.0,))
    requests = [LongformFile.from_samples(str(u.path), load_audio(u.path), tiny_runner.n_mels, tiny_runner.tokenizer,
                                          one, language="en").next_window() for u in utterances]
    windows = decode_windows(tiny_runner, requests, options, SHORT_FORM)
    transcriber = Transcriber(tiny_runner, options=options, longform=one)
    results = [o.result for o in transcriber.transcribe_many([u.path for u in utterances])]
    assert [r.text for r in results] == [w.result.text.strip() for w in windows]
    assert all(len(r.windows) == 1 and r.windows[0].kept_frames == 1500 for r in results)


@pytest.fixture(scope="module")
def base_pair(base_runner):
    """base dense, and base with a deliberately poor config (5% of frames, truncated) sharing its weights."""
    from whisper_eas.config import PruneConfig
    from whisper_eas.runners.torch_runner import TorchRunner

    dense = base_runner
    poor = TorchRunner("base", prune=PruneConfig(layer=1, keep_ratio=0.05, strategy="truncate"), hf_model=dense.model)
    return dense, poor


@pytest.fixture(scope="module")
def two_languages():
    """An English and a Mandarin clip as 30 s windows."""
    from whisper_eas.audio import load_audio
    from whisper_eas.features import window_features

    files = [AUDIO / "jfk-inaugural-1961.flac",
             DATA.parents[1] / ".." / "shared" / "data" / "multilingual" / "audio" / "wenet-aishell-BAC009S0724W0121.flac"]
    return torch.from_numpy(np.stack([window_features(load_audio(f), 80) for f in files]))


def test_language_detection_falls_back_to_dense_when_pruned_is_unsure(base_pair, two_languages):
    """language_min_prob=1: every detection on a pruned encoding is redone dense, so language and
    probability are dense's exactly; 0: the pruned encoding's own (different) probabilities."""
    dense, poor = base_pair
    options = DecodingOptions(sample_len=4)
    requests = window_requests(two_languages, options)
    reference = decode_windows(dense, requests, options)
    assert [o.result.language for o in reference] == ["en", "zh"] and all(o.language_prob > 0.9 for o in reference)
    always = decode_windows(poor, requests, options, guard=GuardOptions(enabled=False, language_min_prob=1.0))
    assert [(o.result.language, o.language_prob) for o in always] == [(o.result.language, o.language_prob) for o in reference]
    assert all(o.kept_frames == 75 for o in always)  # the language came from dense, the decoding did not
    own = decode_windows(poor, requests, options, guard=GuardOptions(enabled=False, language_min_prob=0.0))
    assert [o.language_prob for o in own] != [o.language_prob for o in reference]


def test_guard_rerun_is_a_clean_dense_decode_that_redetects_the_language(base_pair, two_languages):
    """A guard that fires on every window (log-probability threshold 0): each re-run equals the dense
    decode, language re-detected on the dense encoding; a language the user fixed is kept."""
    dense, poor = base_pair
    options = DecodingOptions(sample_len=4)
    requests = window_requests(two_languages, options)
    reference = decode_windows(dense, requests, options)
    strict = GuardOptions(logprob_threshold=0.0, language_min_prob=0.0)
    rerun = decode_windows(poor, requests, options, guard=strict)
    for ours, theirs in zip(rerun, reference):
        assert ours.fallback == "logprob" and ours.kept_frames == 1500 and ours.unguarded.kept_frames == 75
        assert (ours.result.tokens, ours.result.language, ours.language_prob) == \
            (theirs.result.tokens, theirs.result.language, theirs.language_prob)
        assert ours.unguarded.language_prob != theirs.language_prob  # first detected on the pruned encoding
    fixed = DecodingOptions(sample_len=4, language="de")
    kept = decode_windows(poor, window_requests(two_languages, fixed), fixed, guard=strict)
    assert all(o.fallback and o.result.language == "de" and o.language_prob is None for o in kept)
