"""Batched long-form: Silero VAD, chunking, times mapped back, pruning within the speech, real audio."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from whisper_eas.audio import SAMPLE_RATE, load_audio
from whisper_eas.batched_longform import (
    BatchedOptions, encode_speech, make_chunks, region_config, region_content, transcribe_batched,
)
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.evaluation.wer import word_errors
from whisper_eas.features import window_features
from whisper_eas.transcribe import Transcriber
from whisper_eas.vad import SileroVad, SpeechSpan, VadOptions, VadUnavailable, speech_spans

from conftest import AUDIO, DATA
from onnx_exports import SPARSE, exported

JFK = AUDIO / "jfk-inaugural-1961.flac"
SHARED_LONG = DATA.parents[2] / "shared" / "data" / "speech-dev" / "manifest-long.tsv"  # one file of it
LONG = AUDIO / "long-cathy-a0001-a0019.flac"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")


@pytest.fixture(scope="module")
def sparse_runner(tiny_model):
    from whisper_eas.runners.torch_runner import TorchRunner

    return TorchRunner("tiny.en", SPARSE, hf_model=tiny_model)


def check_segments(result, duration_s: float) -> None:
    """Times inside the audio, each segment forward in time, segments in order and not overlapping."""
    previous_end = 0.0
    for segment in result.segments:
        assert 0.0 <= segment.start < segment.end <= duration_s + 1e-6, segment
        assert segment.start >= previous_end - 1e-6, (segment, previous_end)
        previous_end = segment.end


# ---- VAD ------------------------------------------------------------------------------------------

def test_vad_finds_the_speech_of_a_real_recording():
    audio = load_audio(JFK)
    spans = speech_spans(audio)
    assert spans and all(0 <= s.start < s.end <= len(audio) for s in spans)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))
    assert sum(s.samples for s in spans) > 0.8 * len(audio)  # an address with short pauses


def test_vad_convolutions_in_parallel_give_the_whole_graphs_probabilities():
    """The graph cut before its LSTM, the convolutions on parts of the rows in parallel: the same
    probabilities bit for bit as the whole graph in one call, on a real 60 s recording."""
    audio = load_audio(LONG)
    split, whole = SileroVad(parts=2), SileroVad(parts=1)
    assert split._split is not None and whole._split is None  # the package's graph has that shape
    assert np.array_equal(split.probabilities(audio), whole.probabilities(audio))
    assert np.array_equal(split.probabilities(audio[: 16000 * 3]), whole.probabilities(audio[: 16000 * 3]))


def test_vad_rule_matches_faster_whisper_on_its_model():
    """Our port of silero-vad's span rule, fed faster-whisper's copy of the model, cuts exactly as
    faster-whisper's batched pipeline does (so both decode the same chunks)."""
    fw_vad = pytest.importorskip("faster_whisper.vad")
    from faster_whisper.utils import get_assets_path

    audio = load_audio(LONG)
    ours = speech_spans(audio, VadOptions(), SileroVad(f"{get_assets_path()}/silero_vad_v6.onnx"))
    fw_options = fw_vad.VadOptions(max_speech_duration_s=30, min_silence_duration_ms=160)
    theirs = fw_vad.get_speech_timestamps(audio, fw_options)
    assert [(s.start, s.end) for s in ours] == [(d["start"], d["end"]) for d in theirs]


def test_noise_has_no_speech_and_gives_no_segments(sparse_runner):
    noise = np.random.default_rng(0).normal(0, 1e-3, 20 * SAMPLE_RATE).astype(np.float32)
    assert speech_spans(noise) == []
    result = Transcriber(sparse_runner, batched=BatchedOptions()).transcribe(noise)
    assert result.segments == [] and result.text == "" and result.windows == []


def test_missing_vad_is_one_clear_error(monkeypatch, sparse_runner):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("silero_vad", "faster_whisper") else real(name, *a))
    with pytest.raises(VadUnavailable, match=r"pip install 'whisper-eas\[vad\]'"):
        Transcriber(sparse_runner, batched=BatchedOptions())


def test_bad_vad_options_are_rejected():
    with pytest.raises(ValueError, match="threshold"):
        BatchedOptions(vad=VadOptions(threshold=1.5)).check()


# ---- chunks and times -----------------------------------------------------------------------------

def test_chunks_concatenate_spans_up_to_30s_and_map_times_back():
    audio = np.zeros(100 * SAMPLE_RATE, dtype=np.float32)
    s = SAMPLE_RATE
    spans = [SpeechSpan(2 * s, 12 * s), SpeechSpan(20 * s, 35 * s), SpeechSpan(40 * s, 50 * s),
             SpeechSpan(60 * s, 65 * s)]
    chunks = make_chunks(audio, spans, 30.0)
    assert [len(c.pieces) for c in chunks] == [2, 2]  # 10 + 15 s, then 10 + 5 s (25 + 10 > 30)
    first = chunks[0]
    assert first.duration_s == 25.0
    assert first.original_time(0.0) == 2.0
    assert first.original_time(9.5) == 11.5
    assert first.original_time(10.0, is_end=True) == 12.0  # an end stays in the span it closes
    assert first.original_time(10.0) == 20.0  # a start opens the next span
    assert first.original_time(24.0) == 34.0
    assert chunks[1].original_time(12.0) == 62.0


def test_region_follows_the_speech_on_a_grid():
    options = BatchedOptions()
    assert region_content(550, options) == 750  # 11 s of audio: the 15 s grid point
    assert region_content(1490, options) == 1500
    config = region_config(SPARSE, options)
    assert config.padding == "drop" and config.speech_floor == 10.0
    assert region_config(config, options) is config


# ---- pruning within the speech --------------------------------------------------------------------

def test_full_region_reproduces_window_pruning(sparse_runner, tmp_path_factory, tiny_model):
    """A chunk of 30 s of audio has no padding: the region path keeps exactly what the runner's
    own pruning keeps, on PyTorch and through the exported graphs."""
    from whisper_eas.runners.ort_runner import OrtRunner

    mel = window_features(load_audio(LONG)[: 30 * SAMPLE_RATE])[None]
    config = region_config(SPARSE, BatchedOptions())
    reference = sparse_runner.encode(mel)
    ours = encode_speech(sparse_runner, mel, [1500], config)
    assert np.array_equal(ours.kept, reference.kept)
    torch.testing.assert_close(ours.hidden, reference.hidden)
    ort_runner = OrtRunner(exported(tmp_path_factory, tiny_model, SPARSE))
    graph = encode_speech(ort_runner, mel, [1500], config)
    assert np.array_equal(graph.kept, reference.kept)
    torch.testing.assert_close(torch.as_tensor(graph.hidden), reference.hidden, atol=2e-3, rtol=1e-3)


def test_padded_chunk_keeps_its_share_of_the_speech_only(sparse_runner):
    audio = load_audio(JFK)  # 11 s: region 15 s + margin, the rest of the window is padding
    mel = window_features(audio)[None]
    content = region_content(int(np.ceil(len(audio) / 320)), BatchedOptions())
    config = region_config(SPARSE, BatchedOptions())
    region = config.region_frames(content, 1500)
    encoded = encode_speech(sparse_runner, mel, [content], config)
    assert encoded.n_kept == SPARSE.keep_count(region) < SPARSE.keep_count(1500)
    assert int(encoded.kept.max()) < region


# ---- end to end on real recordings ------------------------------------------------------------------

def test_batched_long_recording_is_close_to_sequential(tmp_path_factory, tiny_model):
    from whisper_eas.runners.ort_runner import OrtRunner

    runner = OrtRunner(exported(tmp_path_factory, tiny_model, SPARSE))  # the product's CPU path, and the quick one
    reference = read_manifest(DATA / "manifest-long.tsv")[0]
    audio = load_audio(reference.path)
    sequential = Transcriber(runner, batch_size=4).transcribe(audio)
    batched = Transcriber(runner, batch_size=4, batched=BatchedOptions()).transcribe(audio)
    check_segments(batched, len(audio) / SAMPLE_RATE)
    assert batched.timing["mode"] == "batched" and len(batched.windows) >= 2
    assert all(w.kept_frames <= 750 for w in batched.windows)
    seq_errors, words = word_errors(reference.text, sequential.text)
    batched_errors, _ = word_errors(reference.text, batched.text)
    assert batched_errors <= seq_errors + max(3, 0.03 * words), (batched.text, sequential.text)


def test_batched_timestamps_mode_gives_finer_segments_in_order(sparse_runner):
    audio = load_audio(JFK)
    base = Transcriber(sparse_runner)
    part = transcribe_batched(sparse_runner, audio, base.options, base.longform, base.guard, 8,
                              BatchedOptions(timestamps=True))
    assert len(part.segments) >= 2
    check_segments(part, len(audio) / SAMPLE_RATE)
    assert "ask not what your country can do for you" in " ".join(s.text for s in part.segments).lower()


# ---- command line ---------------------------------------------------------------------------------

def test_cli_batched_writes_times_inside_the_audio(tmp_path):
    from click.testing import CliRunner

    from whisper_eas.cli.transcribe_cmd import command

    result = CliRunner().invoke(command, ["--batched", "--vad-threshold", "0.4", "--format", "json",
                                          "--output-dir", str(tmp_path), str(JFK)])
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert data["timing"]["mode"] == "batched"
    assert data["segments"] and all(0 <= s["start"] < s["end"] <= data["duration_s"] for s in data["segments"])
    assert "ask not what your country can do for you" in data["text"].lower()
    misuse = CliRunner().invoke(command, ["--vad-threshold", "0.4", str(JFK)])
    assert misuse.exit_code != 0 and "--vad-threshold applies to --batched only" in misuse.output


def test_cli_batched_padding_trim_on_full_chunks(tmp_path):
    """tiny.en's batched defaults, the padding trim (a config that reads the audio) on int8-dec graphs,
    on a recording with full 30 s chunks: each chunk is pruned over its own region, so the decoder
    gets equal kept counts per batch (it once got a padded batch here and failed)."""
    import json

    from click.testing import CliRunner

    from whisper_eas.cli.transcribe_cmd import command

    reference = next(u for u in read_manifest(SHARED_LONG) if u.id == "long-ls-test-other-2609-156975")
    result = CliRunner().invoke(command, ["--batched", "--format", "json", "--output-dir", str(tmp_path),
                                          str(reference.path)])
    assert result.exit_code == 0, result.output
    # the batched default config and the CPU default backend, said
    assert "uniform L1 k1.0 padding=drop speech_floor=10.0" in result.output and "onnxruntime" in result.output
    assert "int8-dec" in result.output  # the batched mode's precision
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert data["timing"]["mode"] == "batched" and max(w["kept_frames"] for w in data["windows"]) == 1500
    previous = 0.0
    for segment in data["segments"]:
        assert previous - 1e-6 <= segment["start"] < segment["end"] <= data["duration_s"] + 1e-6
        previous = segment["end"]
    errors, words = word_errors(reference.text, data["text"])
    assert errors <= 0.35 * words, data["text"]  # LibriSpeech test-other, read fast: tiny.en's dense is ~25%
