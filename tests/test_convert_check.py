"""`whisper-eas convert --check`: a real conversion proved against CTranslate2 on real audio."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import DATA
from whisper_eas.checkpoints.registry import embedded_ct2_dir
from whisper_eas.cli.main import cli


def test_convert_check_proves_tokens_equal(tmp_path):
    pytest.importorskip("ctranslate2")
    src = embedded_ct2_dir("tiny.en", tmp_path / "ct2")
    report = tmp_path / "check.json"
    args = ["convert", "--ct2", str(src), "--out", str(tmp_path / "hf"), "--check", str(DATA / "manifest.tsv"),
            "--limit", "2", "--json", str(report)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "greedy tokens equal on 2 / 2 utterances" in result.output
    data = json.loads(report.read_text())
    assert data["ok"] and len(data["rows"]) == 2 and all(r["encoder_max_abs_diff"] < 1e-2 for r in data["rows"])
    assert all(r["ours"] == r["ct2_text"] for r in data["rows"])
