"""trt-transcribe on real files with the embedded model."""

from __future__ import annotations

import json

from click.testing import CliRunner

from whisper_eas.cli.transcribe_cmd import command

from conftest import AUDIO


def test_transcribes_a_dev_file_to_stdout():
    result = CliRunner().invoke(command, [str(AUDIO / "jfk-inaugural-1961.flac")])
    assert result.exit_code == 0, result.output
    assert "ask not what your country can do for you" in result.output.lower()


def test_writes_one_json_per_input_and_reports_bad_files(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is a text file, not audio")
    result = CliRunner().invoke(
        command,
        [str(AUDIO / "ls-test-clean-1089-134691-0000.flac"), str(bad), "--format", "json", "--output-dir", str(tmp_path / "out"),
         "--layer", "1", "--keep-ratio", "0.5"],
    )
    assert result.exit_code == 1
    assert "notes.wav" in result.output and "Traceback" not in result.output
    data = json.loads((tmp_path / "out" / "ls-test-clean-1089-134691-0000.json").read_text())
    assert "wait no longer" in data["text"].lower()
    assert data["prune"]["layer"] == 1 and data["segments"][0]["kept_frames"] == 750
