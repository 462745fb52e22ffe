"""`whisper-eas defaults` is what the commands run: each command, given no prune or precision flag,
runs the row of the table of defaults for its mode (config and precision of the graphs)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from whisper_eas.cli.main import cli
from whisper_eas.cli.transcribe_cmd import command as trt_transcribe
from whisper_eas.config import format_prune
from whisper_eas.defaults import default_for

from conftest import AUDIO

CLIP = AUDIO / "jfk-inaugural-1961.flac"


def _graphs(row) -> str:
    """How the banner names the cached graphs a row runs: `tiny.en [dense] int8-proj`."""
    return f"{row.model} [{format_prune(row.config)}] {row.precision}"


def test_defaults_prints_every_row_with_its_reason_and_figure():
    result = CliRunner().invoke(cli, ["defaults", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {(r["model"], r["device"], r["mode"]) for r in rows} >= {("tiny.en", "cpu", "sequential"),
                                                                     ("base", "cuda", "serve")}
    assert all(r["why"] and r["speech_val"] for r in rows)
    text = CliRunner().invoke(cli, ["defaults", "--model", "tiny.en"]).output
    assert "int8-proj" in text and "speech-val:" in text and "base" not in text.split("\n")[1]
    assert "no defaults" in CliRunner().invoke(cli, ["defaults", "--model", "large-v9"]).output


def test_trt_transcribe_runs_the_sequential_and_batched_rows(jfk_cli_default):
    for args, mode in (([], "sequential"), (["--batched"], "batched")):
        # with no flag: the run test_transcribe_cli.py reads too (conftest.py), on the same CLIP
        result = jfk_cli_default if not args else CliRunner().invoke(trt_transcribe, [str(CLIP), *args])
        assert result.exit_code == 0, result.output
        assert f"{_graphs(default_for('tiny.en', 'cpu', mode))} ONNX graphs" in result.output, result.output


def test_eval_scores_what_trt_transcribe_runs(tmp_path):
    """eval's backend defaults to auto, as trt-transcribe's: the same cached graphs, the same config."""
    manifest = tmp_path / "m.tsv"
    manifest.write_text(f"id\tpath\tduration_s\ttext\njfk\t{CLIP}\t11.0\tand so my fellow americans\n")
    out = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["eval", "--manifest", str(manifest), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    row = default_for("tiny.en", "cpu", "sequential")
    assert report["backend"] == "onnxruntime"
    assert report["config"] == (row.config.to_dict() if row.config else None)
