"""Issue 28: no option silently ignored, output names independent of input order, and the smaller
rough edges (temporaries a kill leaves, the summary of a run that transcribed nothing, the API's
default backend, `--backend onnxruntime` without a folder, the banner of the word-timestamps fallback).

Real audio, real weights, real ONNX Runtime; every case failed before its fix.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from whisper_eas.cli.inputs import discover
from whisper_eas.cli.transcribe_cmd import command

from conftest import AUDIO

GOOD = AUDIO / "ls-test-clean-1089-134691-0000.flac"  # 2.1 s, "... wait no longer ..."
SHORT = AUDIO / "cathy-arctic_a0001.flac"  # 3.3 s, "Author of the danger trail, Philip steals, etc."
LONG = AUDIO / "long-cathy-a0001-a0019.flac"  # 60 s
SRC = Path(__file__).parent.parent / "src"


def _cli(args: list) -> tuple[int, str]:
    result = CliRunner().invoke(command, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def _gap_clip(tmp_path: Path) -> tuple[Path, float]:
    """SHORT, 3 s of silence, GOOD: the VAD joins both into one chunk with the silence cut out."""
    a, rate = sf.read(SHORT, dtype="float32")
    b, _ = sf.read(GOOD, dtype="float32")
    path = tmp_path / "gap.flac"
    sf.write(path, np.concatenate([a, np.zeros(3 * rate, np.float32), b]), rate)
    return path, (len(a) + 3 * rate) / rate


@pytest.fixture(scope="module")
def batched():
    from whisper_eas.batched_longform import BatchedOptions
    from whisper_eas.transcribe import Transcriber

    return Transcriber.from_model("tiny.en", batched=BatchedOptions())


# ---- --batched honours every option or refuses it ------------------------------------------


def test_batched_word_timestamps_are_aligned_per_chunk_in_recording_time(tmp_path, batched):
    clip, second_starts = _gap_clip(tmp_path)
    result = batched.transcribe(clip, word_timestamps=True)
    assert result.backend == "onnxruntime"  # the export's alignment graph: no switch to PyTorch
    words = [w for s in result.segments for w in (s.words or [])]
    assert words and all(s.words for s in result.segments)
    assert all(0 <= w.start <= w.end <= result.duration_s + 0.01 for w in words)
    assert all(a.start <= b.start for a, b in zip(words, words[1:]))
    later = [w for w in words if w.word.strip().lower().strip(".,") in ("wait", "longer")]
    assert later and all(w.start >= second_starts - 0.3 for w in later)  # mapped across the cut silence
    first = [w for w in words if w.word.strip().lower() in ("author", "danger")]
    assert first and all(w.end <= second_starts - 2.5 for w in first)


def test_batched_word_timestamps_agree_with_the_sequential_mode(tmp_path, batched):
    from whisper_eas.transcribe import Transcriber

    clip, _ = _gap_clip(tmp_path)
    sequential = Transcriber.from_model("tiny.en").transcribe(clip, word_timestamps=True)
    together = batched.transcribe(clip, word_timestamps=True)
    seq = {w.word.strip().lower(): w.start for s in sequential.segments for w in s.words}
    both = [(seq[w.word.strip().lower()], w.start) for s in together.segments for w in s.words
            if w.word.strip().lower() in seq]
    assert len(both) >= 8
    assert np.median([abs(a - b) for a, b in both]) < 0.2


def test_batched_initial_prompt_and_hotwords_prompt_every_chunk(batched):
    plain = batched.transcribe(SHORT).text
    assert "Steels" not in plain  # tiny.en hears "Philip steals"
    assert "Steels" in batched.transcribe(SHORT, initial_prompt="Philip Steels").text
    assert "Steels" in batched.transcribe(SHORT, hotwords="Philip Steels").text


def test_batched_allow_partial_transcribes_a_truncated_file(tmp_path):
    audio, rate = sf.read(LONG, dtype="float32")
    sf.write(tmp_path / "a.mp3", audio[: rate * 20], rate, format="MP3")
    data = (tmp_path / "a.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: len(data) // 2])
    code, output = _cli([tmp_path / "cut.mp3", "--batched", "--allow-partial", "--format", "json",
                         "--output-dir", tmp_path / "out"])
    assert code == 0, output
    assert "warning" in output and "PARTIAL" in output
    result = json.loads((tmp_path / "out" / "cut.json").read_text())
    assert "danger trail" in result["text"].lower() and "partial decode" in result["warnings"][0]


def test_batched_refuses_the_hallucination_silence_threshold_in_one_line():
    code, output = _cli([SHORT, "--batched", "--word-timestamps", "--hallucination-silence-threshold", "2"])
    assert code == 2 and "--hallucination-silence-threshold" in output and "--batched" in output


# ---- option text and folders ------------------------------------------------------------------


def test_undecodable_option_text_is_one_line_naming_the_option():
    from whisper_eas.errors import ConfigError
    from whisper_eas.longform import LongformOptions

    undecodable = os.fsdecode(b"\xff")  # what `--hotwords $'\xff'` reaches Python as
    for flag in ("--hotwords", "--initial-prompt"):
        code, output = _cli([SHORT, flag, undecodable])
        assert code == 2 and flag in output and "UTF-8" in output, output
        assert "TextInputSequence" not in output
    with pytest.raises(ConfigError, match="hotwords"):
        LongformOptions(hotwords=undecodable)


@pytest.mark.parametrize("content", ["[1, 2]", '"whisper-eas-onnx"', "3"])
def test_engine_dir_manifest_that_is_not_an_object_is_refused(tmp_path, content):
    (tmp_path / "manifest.json").write_text(content)
    (tmp_path / "encoder_head.onnx").write_bytes(b"\x00")
    code, output = _cli([SHORT, "--engine-dir", tmp_path])
    assert code == 1 and "manifest.json" in output and "not the object" in output, output
    assert "backend: pytorch" not in output and "danger" not in output.lower()


# ---- output names ---------------------------------------------------------------------------


def test_output_names_do_not_depend_on_input_order(tmp_path):
    for sub, clip in (("d1", GOOD), ("d2", SHORT)):
        (tmp_path / sub).mkdir()
        shutil.copy(clip, tmp_path / sub / "x.flac")
    first, second = tmp_path / "d1" / "x.flac", tmp_path / "d2" / "x.flac"
    forward = {f.path: f.name for f in discover([first, second])}
    assert forward == {f.path: f.name for f in discover([second, first])}
    assert len(set(forward.values())) == 2 and all(f.renamed for f in discover([first, second]))
    out = tmp_path / "out"
    code, output = _cli([first, second, "--dense", "--output-dir", out])
    assert code == 0, output
    code, again = _cli([second, first, "--dense", "--output-dir", out])  # reordered: both already done
    assert code == 0 and "2 skipped" in again
    for line in again.splitlines():  # every note names the input's own transcript
        if line.startswith("note:"):
            source, name = line.split("note: ")[1].split(" -> output name ")
            name = name.split(" (")[0]
            words = "wait no longer" if source.endswith(os.path.join("d1", "x.flac")) else "danger trail"
            assert words in (out / f"{name}.txt").read_text().lower()
    assert (out / f"{forward[first]}.txt").read_text().lower().count("wait no longer") == 1
    assert "danger trail" in (out / f"{forward[second]}.txt").read_text().lower()


# ---- smaller -----------------------------------------------------------------------------------


def _wait_for(pattern: str, folder: Path, proc: subprocess.Popen, seconds: float = 120.0) -> list[Path]:
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = list(folder.glob(pattern))
        if found:
            return found
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no {pattern} in {folder} after {seconds} s")


def _stalled_writer(code: str) -> str:
    """Python that runs `code` with every fsync stalled: a write is caught holding its temporary."""
    return textwrap.dedent("""
        import os, sys, time
        os.fsync = lambda fd: time.sleep(600)
    """) + textwrap.dedent(code)


def test_sigkill_temporaries_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", _stalled_writer(f"""
        from whisper_eas.io_utils import atomic_write_text
        atomic_write_text({str(out / 'gone.txt')!r}, 'half')
    """)], env={**os.environ, "PYTHONPATH": str(SRC)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        (tmp,) = _wait_for(".gone.txt.*.tmp", out, writer)
    finally:
        writer.kill()
        writer.wait()
    assert tmp.exists()  # SIGKILL runs no cleanup
    code, output = _cli([GOOD, "--dense", "--output-dir", out])
    assert code == 0 and "removed 1 temporary file(s)" in output, output
    assert not tmp.exists() and (out / f"{GOOD.stem}.txt").is_file()


def test_sigterm_mid_write_leaves_no_temporary(tmp_path):
    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-c", _stalled_writer(f"""
        sys.argv = ["trt-transcribe", {str(GOOD)!r}, "--dense", "--output-dir", {str(out)!r}]
        from whisper_eas.cli.transcribe_cmd import main
        main()
    """)], env={**os.environ, "PYTHONPATH": str(SRC)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(f".{GOOD.stem}.txt.*.tmp", out, run)
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 128 + signal.SIGTERM
    assert not list(out.glob(".*.tmp"))


def test_a_run_that_transcribes_nothing_prints_no_nan(tmp_path):
    (tmp_path / "empty.flac").touch()
    code, output = _cli([tmp_path / "empty.flac", "--dense"])
    assert code == 1 and "0 file(s) ok, 1 failed" in output
    assert "nan" not in output and "no audio transcribed" in output


def test_api_default_backend_is_the_clis():
    from whisper_eas.transcribe import Transcriber

    transcriber = Transcriber.from_model("tiny.en", None)
    assert transcriber.runner.backend == "onnxruntime" and "cached" in transcriber.backend_reason
    assert "wait no longer" in transcriber.transcribe(GOOD).text.lower()


def test_backend_onnxruntime_without_engine_dir_uses_the_cached_export():
    code, output = _cli([GOOD, "--dense", "--backend", "onnxruntime"])
    assert code == 0, output
    assert "backend: onnxruntime" in output and "cached export" in output
    assert "wait no longer" in output.lower()


def test_word_timestamps_fallback_banner_says_why(tmp_path, monkeypatch):
    """A cached export from before the alignment graph: PyTorch gives the words, and the banner
    says that, not "named with --backend"."""
    from whisper_eas.io_utils import link_or_copy
    from whisper_eas.runners.cached_export import default_cpu_export

    real = default_cpu_export("tiny.en", None).folder
    assert real is not None
    home = tmp_path / "home"
    (home / "onnx-exports").mkdir(parents=True)
    (home / "models").symlink_to(real.parent.parent / "models")
    old = home / "onnx-exports" / real.name
    old.mkdir()
    manifest = json.loads((real / "manifest.json").read_text())
    manifest["files"].pop("align.onnx")
    for name in manifest["files"]:
        link_or_copy(real / name, old / name)  # a hard link: the folder's files must lie inside it
    (old / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("WHISPER_EAS_HOME", str(home))
    code, output = _cli([SHORT, "--dense", "--word-timestamps", "--format", "json"])
    assert code == 0, output
    banner = next(line for line in output.splitlines() if line.startswith("backend:"))
    assert "backend: pytorch" in banner and "alignment graph" in banner and "--backend" not in banner
    assert '"words": [' in output
