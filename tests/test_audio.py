"""Audio in: real recordings in other rates/layouts, and real broken files made from them."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest
import soundfile as sf

from whisper_eas.audio import AudioError, load_audio, probe_duration, resample, wav_truncation

from conftest import AUDIO

FLAC = AUDIO / "long-cathy-a0001-a0019.flac"
SHORT = AUDIO / "jfk-inaugural-1961.flac"


def _error(path) -> str:
    with pytest.raises(AudioError) as info:
        load_audio(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_truncated_flac_is_rejected(tmp_path):
    data = FLAC.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 3])
    assert "truncated" in _error(cut)


def test_truncated_wav_is_rejected(tmp_path):
    audio, rate = sf.read(SHORT, dtype="int16")
    full = tmp_path / "full.wav"
    sf.write(full, audio, rate, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert wav_truncation(full) is None
    assert "truncated" in _error(cut)


def test_streamed_wav_with_unknown_length_is_accepted(tmp_path):
    audio, rate = sf.read(SHORT, dtype="int16")
    path = tmp_path / "streamed.wav"
    sf.write(path, audio, rate, subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    at = raw.index(b"data") + 4
    raw[at : at + 4] = b"\xff\xff\xff\xff"  # what a writer that could not seek back leaves behind
    path.write_bytes(bytes(raw))
    assert wav_truncation(path) is None


def test_zero_byte_file(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.touch()
    assert "empty" in _error(empty)


def test_text_renamed_wav(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)  # no ffmpeg fallback here
    fake = tmp_path / "notes.wav"
    fake.write_text("meeting notes, not audio\n" * 20)
    assert "not a recognised audio format" in _error(fake)


def test_unknown_format_without_ffmpeg_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    fake = tmp_path / "clip.m4a"
    fake.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(200))
    assert "install ffmpeg" in _error(fake)


def test_nan_and_inf_samples_are_rejected(tmp_path):
    audio, rate = sf.read(SHORT, dtype="float32")
    for bad in (np.nan, np.inf):
        corrupt = audio.copy()
        corrupt[rate : rate + 10] = bad
        path = tmp_path / f"bad-{bad}.wav"
        sf.write(path, corrupt, rate, subtype="FLOAT")
        assert "NaN or infinite" in _error(path)


def test_digital_silence_is_rejected(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16000, np.int16), 16000, subtype="PCM_16")
    assert "silence" in _error(path)


def test_missing_and_directory(tmp_path):
    assert "no such file" in _error(tmp_path / "absent.flac")
    assert "not a regular file" in _error(tmp_path)


def test_stereo_44k_wav_matches_the_mono_16k_original(tmp_path):
    mono16 = load_audio(SHORT)
    up = resample(mono16, 16000, 44100)
    stereo = np.stack([up, 0.5 * up], axis=1)  # louder left channel: downmix is the mean
    path = tmp_path / "stereo44k.wav"
    sf.write(path, stereo, 44100, subtype="PCM_16")
    back = load_audio(path)
    assert abs(len(back) - len(mono16)) <= 2
    n = min(len(back), len(mono16))
    corr = np.corrcoef(back[:n], 0.75 * mono16[:n])[0, 1]
    assert corr > 0.99
    assert probe_duration(path) == pytest.approx(len(mono16) / 16000, abs=1e-3)


@pytest.mark.parametrize("fmt,subtype,suffix", [("OGG", "VORBIS", ".ogg"), ("MP3", "MPEG_LAYER_III", ".mp3")])
def test_lossy_formats_at_other_rates(tmp_path, fmt, subtype, suffix):
    mono16 = load_audio(SHORT)
    audio = resample(mono16, 16000, 22050)
    path = tmp_path / f"clip{suffix}"
    try:
        sf.write(path, audio, 22050, format=fmt, subtype=subtype)
    except (sf.LibsndfileError, ValueError, TypeError) as error:
        pytest.skip(f"this libsndfile cannot write {fmt}: {error}")
    back = load_audio(path)
    assert abs(len(back) - len(mono16)) < 0.1 * 16000  # codec padding only
    assert np.isfinite(back).all() and np.abs(back).max() > 0.01


@pytest.mark.skipif(sys.platform == "win32", reason="shell script stand-in for ffmpeg")
def test_ffmpeg_is_used_when_soundfile_cannot_read(tmp_path, monkeypatch):
    """A stand-in `ffmpeg` on PATH (decodes with soundfile, writes f32le) proves the fallback path."""
    tool = tmp_path / "bin" / "ffmpeg"
    tool.parent.mkdir()
    tool.write_text(
        f"#!{sys.executable}\n"
        "import sys, soundfile as sf, numpy as np\n"
        "src = sys.argv[sys.argv.index('-i') + 1].removeprefix('file:')\n"
        "data, rate = sf.read(src.replace('.m4a', '.flac'), dtype='float32')\n"
        "sys.stdout.buffer.write(np.asarray(data, np.float32).tobytes())\n"
    )
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "clip.flac").write_bytes(SHORT.read_bytes())
    m4a = tmp_path / "clip.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(200))  # soundfile cannot read it
    assert np.array_equal(load_audio(m4a), load_audio(SHORT))
