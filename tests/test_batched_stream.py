"""Batched mode streams a file (issue 28 item 5): two passes over the audio, never the whole
recording in memory, and the same transcript as the same samples decoded from memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from whisper_eas import audio as audio_module
from whisper_eas.audio import SAMPLE_RATE, load_audio
from whisper_eas.batched_longform import BatchedOptions, Piece, chunk_audio, make_chunks, plan_chunks
from whisper_eas.vad import SpeechSpan, vad_available

from conftest import AUDIO

SENTENCES = [AUDIO / f"{name}.flac" for name in ("cathy-arctic_a0001", "ls-test-other-1688-142285-0002",
                                                 "ls-test-clean-1089-134686-0001", "ls-test-clean-1089-134691-0000")]
LONG = AUDIO / "long-cathy-a0001-a0019.flac"

pytestmark = pytest.mark.skipif(not vad_available(), reason="needs Silero VAD (the vad extra)")


@pytest.fixture(scope="module")
def batched():
    """The CLI's batched path: tiny.en's batched defaults (the padding trim, regions batched
    together) on the cached ONNX Runtime graphs, with word timestamps; two windows per batch, so a
    file has several batches, decoded out of the chunks' order."""
    from whisper_eas.transcribe import Transcriber

    return Transcriber.from_model("tiny.en", batched=BatchedOptions(), batch_size=2, word_timestamps=True)


def _key(result) -> list:
    return [(s.id, s.text, s.start, s.end, s.tokens, [(w.word, w.start, w.end, w.probability) for w in s.words or []])
            for s in result.segments]


def test_chunks_are_cut_from_blocks_as_from_the_whole_array():
    """Pieces across block edges, a chunk of pieces far apart: the same samples as slicing the
    array, each chunk given as soon as its last piece is read."""
    audio = np.random.default_rng(0).standard_normal(100 * SAMPLE_RATE).astype(np.float32)
    s = SAMPLE_RATE
    spans = [SpeechSpan(2 * s, 12 * s), SpeechSpan(20 * s, 35 * s), SpeechSpan(40 * s, 50 * s),
             SpeechSpan(60 * s, 65 * s), SpeechSpan(99 * s, 100 * s)]
    whole = make_chunks(audio, spans)
    blocks = [audio[i : i + 7919] for i in range(0, len(audio), 7919)]
    read: list[int] = []

    def counted():
        for block in blocks:
            read.append(len(block))
            yield block

    for chunk in chunk_audio(counted(), plan_chunks(spans)):
        expected = whole[chunk.index]
        assert chunk.pieces == expected.pieces and np.array_equal(chunk.samples, expected.samples)
        assert sum(read) < chunk.pieces[-1].end + 7919  # given at the block that ends its last piece
    assert [c.pieces[0] for c in whole] == [Piece(0, 2 * s, 12 * s), Piece(0, 40 * s, 50 * s)]
    with pytest.raises(ValueError, match="ended at 80.00 s"):
        list(chunk_audio(iter((audio[: 80 * s],)), plan_chunks(spans)))


def test_streamed_file_gives_the_in_memory_transcript(batched, monkeypatch):
    """A file read in small blocks (pieces cut across many block edges) and the same samples as an
    array: the same segments, tokens, times and words."""
    monkeypatch.setattr(audio_module, "BLOCK_FRAMES", 10007)
    streamed = batched.transcribe(str(LONG))
    in_memory = batched.transcribe(load_audio(LONG))
    assert len(streamed.windows) >= 3 and streamed.segments and streamed.segments[0].words
    assert _key(streamed) == _key(in_memory)
    assert streamed.windows == in_memory.windows and streamed.duration_s == in_memory.duration_s


def _recording(path, minutes: int) -> int:
    """`minutes` of quiet room noise with four real sentences spread over it (as 16-bit FLAC at
    `path`); returns its size as float32 samples in bytes."""
    audio = (np.random.default_rng(0).standard_normal(minutes * 60 * SAMPLE_RATE) * 1e-3).astype(np.float32)
    for i, sentence in enumerate(SENTENCES):
        at, samples = int((i + 0.5) / len(SENTENCES) * len(audio)), load_audio(sentence)
        audio[at : at + len(samples)] += samples
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return audio.nbytes


def _peak(transcriber, path) -> tuple:
    """(result, the most memory NumPy and Python held at once while transcribing `path`)."""
    tracemalloc.start()
    try:
        result = transcriber.transcribe(str(path))
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_long_file_is_never_held_whole(batched, tmp_path):
    """The same four sentences spread over 5 min and over 20 min of quiet room noise (19 and 77 MB
    as float32): the most memory alive at once is the same for both (reading a file whole cost
    2.5 times its size more), bounded by the VAD's runs (20 s each) and one batch's decoding."""
    plain = batched.with_settings(word_timestamps=False)
    short_size, long_size = _recording(tmp_path / "short.flac", 5), _recording(tmp_path / "long.flac", 20)
    short, short_peak = _peak(plain, tmp_path / "short.flac")
    result, long_peak = _peak(plain, tmp_path / "long.flac")
    text = result.text.lower()
    assert result.duration_s == 1200.0 and "danger trail" in text and "wait no longer" in text, text
    assert result.segments[0].start < 2.5 * 60 and result.segments[-1].end > 17.5 * 60  # one chunk, times mapped
    assert result.text == short.text
    growth = long_peak - short_peak
    assert growth < (long_size - short_size) / 20, (
        f"peak {short_peak / 1e6:.1f} MB for {short_size / 1e6:.1f} MB of audio, {long_peak / 1e6:.1f} MB for "
        f"{long_size / 1e6:.1f} MB")


def test_arrays_at_other_rates_and_open_files_as_the_sequential_mode_takes_them(batched):
    """An 8 kHz array with `sample_rate=8000` is resampled (it was decoded as if 16 kHz), and an open
    binary file is read (it was refused): the transcripts of the same samples given at 16 kHz."""
    from whisper_eas.audio import resample

    clip = AUDIO / "ls-test-clean-1089-134691-0000.flac"
    at_8k = resample(load_audio(clip), SAMPLE_RATE, 8000)
    expected = batched.transcribe(resample(at_8k, 8000))
    assert expected.text.strip()
    assert _key(batched.transcribe(at_8k, sample_rate=8000)) == _key(expected)
    with clip.open("rb") as f:
        assert _key(batched.transcribe(f)) == _key(batched.transcribe(load_audio(clip)))
