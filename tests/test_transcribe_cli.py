"""trt-transcribe on real files with the embedded model."""

from __future__ import annotations

import importlib.util
import json
import shutil

from click.testing import CliRunner

from whisper_eas.cli.inputs import discover
from whisper_eas.cli.transcribe_cmd import command
from whisper_eas.runners.factory import choose_backend

from conftest import AUDIO
from subtitles import check_srt, check_vtt


def test_transcribes_a_dev_file_to_stdout(jfk_cli_default):
    result = jfk_cli_default  # trt-transcribe jfk-inaugural-1961.flac (conftest.py)
    assert result.exit_code == 0, result.output
    assert "ask not what your country can do for you" in result.output.lower()
    # the default CPU path: ONNX Runtime graphs exported once into the model cache (tests/test_int8.py)
    assert "backend: onnxruntime" in result.output and "fastest on a CPU" in result.output


def test_writes_one_json_per_input_and_reports_bad_files(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is a text file, not audio")
    result = CliRunner().invoke(
        command,
        [str(AUDIO / "ls-test-clean-1089-134691-0000.flac"), str(bad), "--format", "json", "--output-dir", str(tmp_path / "out"),
         "--layer", "1", "--keep-ratio", "0.5", "--backend", "pytorch"],
    )
    assert result.exit_code == 1
    assert "notes.wav" in result.output and "Traceback" not in result.output
    data = json.loads((tmp_path / "out" / "ls-test-clean-1089-134691-0000.json").read_text())
    assert "wait no longer" in data["text"].lower()
    assert data["prune"]["layer"] == 1 and data["segments"][0]["kept_frames"] == 750
    assert data["windows"][0]["kept_frames"] == 750 and data["backend"] == "pytorch"


def _mixed_folder(tmp_path):
    """Two real recordings and three real broken files (plus a note that is not audio at all)."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(AUDIO / "jfk-inaugural-1961.flac", folder / "jfk.flac")
    shutil.copy(AUDIO / "ls-test-clean-1089-134691-0000.flac", folder / "sub" / "wait.flac")
    data = (AUDIO / "cathy-arctic_a0001.flac").read_bytes()
    (folder / "truncated.flac").write_bytes(data[: len(data) // 2])
    (folder / "zero.wav").touch()
    (folder / "text.wav").write_text("not audio, just text with a .wav name\n")
    (folder / "README.txt").write_text("ignored: not an audio extension\n")
    return folder


def test_folder_with_good_and_broken_files_then_resume(tmp_path):
    folder, out = _mixed_folder(tmp_path), tmp_path / "out"
    args = [str(folder), "--format", "all", "--output-dir", str(out), "--batch-size", "4"]
    first = CliRunner().invoke(command, args)
    assert first.exit_code == 1, first.output
    assert "Traceback" not in first.output
    for broken in ("truncated.flac", "zero.wav", "text.wav"):
        assert sum(broken in line for line in first.output.splitlines() if line.startswith("error:")) == 1
    assert "2 file(s) ok, 3 failed" in first.output
    for name in ("jfk", "sub/wait"):
        for fmt in ("txt", "json", "srt", "vtt"):
            assert (out / f"{name}.{fmt}").is_file()
    cues = check_srt((out / "jfk.srt").read_text())
    assert check_vtt((out / "jfk.vtt").read_text()) == cues
    assert 9.0 < cues[-1][1] <= 11.01
    assert "ask not what your country" in (out / "jfk.txt").read_text().lower()
    assert not list(out.rglob("*.tmp")) and not (out / "README.txt").exists()

    stamp = (out / "jfk.json").stat().st_mtime_ns
    again = CliRunner().invoke(command, args)
    assert again.exit_code == 1  # the broken files are tried again and fail again
    assert "0 file(s) ok, 3 failed, 2 skipped" in again.output
    assert (out / "jfk.json").stat().st_mtime_ns == stamp


def test_same_stem_in_two_formats_gets_two_outputs(tmp_path):
    shutil.copy(AUDIO / "cathy-arctic_a0001.flac", tmp_path / "clip.flac")
    shutil.copy(AUDIO / "cathy-arctic_a0001.flac", tmp_path / "clip.wav")  # soundfile reads by content
    names = [f.name for f in discover([tmp_path])]
    assert names == ["clip.flac", "clip.wav"]


def test_tensorrt_without_tensorrt_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(command, [str(AUDIO / "cathy-arctic_a0001.flac"), "--backend", "tensorrt"])
    assert result.exit_code == 1
    assert "TensorRT is not installed" in result.output and "pip install tensorrt" in result.output
    assert "Traceback" not in result.output


def test_format_all_needs_an_output_dir():
    result = CliRunner().invoke(command, [str(AUDIO / "cathy-arctic_a0001.flac"), "--format", "all"])
    assert result.exit_code == 2 and "--output-dir" in result.output


def test_auto_backend_choice_says_why(tmp_path):
    assert choose_backend(None).backend == "pytorch"
    empty = choose_backend(tmp_path)
    assert empty.backend == "pytorch" and "neither TensorRT engines nor an ONNX export" in empty.reason
    (tmp_path / "encoder.engine").write_bytes(b"\x00")
    engines = choose_backend(tmp_path)  # no tensorrt package or GPU on CPU machines
    assert engines.backend in ("pytorch", "tensorrt") and str(tmp_path) in engines.reason
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "whisper-eas-onnx"}))
    (tmp_path / "encoder_head.onnx").write_bytes(b"\x00")
    onnx = choose_backend(tmp_path)
    if onnx.backend != "tensorrt":  # a GPU machine with TensorRT rightly prefers the engines
        expected = "onnxruntime" if importlib.util.find_spec("onnxruntime") else "pytorch"
        assert onnx.backend == expected
        assert ("ONNX export" if expected == "onnxruntime" else "onnxruntime is not installed") in onnx.reason


def test_word_timestamps_and_options_in_the_json(tmp_path):
    result = CliRunner().invoke(command, [str(AUDIO / "cathy-arctic_a0001.flac"), "--word-timestamps", "--dense",
                                          "--initial-prompt", "Philip Steels", "--format", "json",
                                          "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "backend: onnxruntime" in result.output  # the cached export's alignment graph gives the words
    data = json.loads((tmp_path / "cathy-arctic_a0001.json").read_text())
    words = [w for s in data["segments"] for w in s["words"]]
    assert words and all(0 <= w["start"] < w["end"] <= data["duration_s"] + 0.01 for w in words)
    assert "".join(w["word"] for w in words).strip() == data["text"]
    assert data["options"]["longform"]["word_timestamps"] is True
    assert data["options"]["longform"]["initial_prompt"] == "Philip Steels"
