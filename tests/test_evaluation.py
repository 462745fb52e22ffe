"""Manifest parsing, WER scoring and the eval command on real audio."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from whisper_eas.evaluation.manifest import ManifestError, read_manifest
from whisper_eas.evaluation.wer import corpus_wer, word_errors

from conftest import AUDIO, DATA

HEADER = "id\tpath\tduration_s\ttext\n"


def test_manifest_paths_are_relative_to_the_manifest():
    rows = read_manifest(DATA / "manifest.tsv", limit=2)
    assert len(rows) == 2 and rows[0].path.is_file()


def test_malformed_manifest_line_names_its_number(tmp_path):
    bad = tmp_path / "m.tsv"
    bad.write_text(HEADER + "a\taudio/a.flac\t1.0\thello\nb\taudio/b.flac\tnot-a-number\thi\n")
    with pytest.raises(ManifestError, match=r"m.tsv:3: duration_s"):
        read_manifest(bad)
    bad.write_text(HEADER + "a\taudio/a.flac\t1.0\n")
    with pytest.raises(ManifestError, match=r"m.tsv:2: expected 4"):
        read_manifest(bad)
    bad.write_text("id\tfile\ttext\n")
    with pytest.raises(ManifestError, match="header lacks"):
        read_manifest(bad)


def test_wer_uses_whisper_normalizer():
    assert word_errors("THERE'S IRON, THEY SAY", "there is iron they say") == (0, 5)
    assert word_errors("the colour grey", "the color gray")[0] == 0
    wer, words = corpus_wer([("a b c d", "a b c"), ("e f", "e f")])
    assert words == 6 and abs(wer - 100 / 6) < 1e-9


def test_eval_command_scores_real_audio_and_reports_failures(tmp_path):
    from whisper_eas.cli.main import cli

    (tmp_path / "audio").mkdir()
    for name in ("ls-test-clean-1089-134691-0000.flac", "jfk-inaugural-1961.flac"):
        shutil.copy(AUDIO / name, tmp_path / "audio" / name)
    (tmp_path / "audio" / "broken.flac").write_bytes(b"not audio at all")
    manifest = tmp_path / "m.tsv"
    manifest.write_text(
        HEADER
        + "a\taudio/ls-test-clean-1089-134691-0000.flac\t2.0\tHE COULD WAIT NO LONGER\n"
        + "b\taudio/broken.flac\t1.0\tsomething\n"
        + "c\taudio/missing.flac\t1.0\tsomething\n"
        + "d\taudio/jfk-inaugural-1961.flac\t11.0\tAnd so, my fellow Americans: ask not what your country can do for you, ask what you can do for your country.\n"
    )
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        cli, ["eval", "--model", "tiny.en", "--manifest", str(manifest), "--layer", "1", "--keep-ratio", "0.5", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    for key in ("model", "config", "wer", "n_utterances", "n_words", "wall_s", "utterances"):
        assert key in report
    assert report["config"]["layer"] == 1 and report["config"]["keep_ratio"] == 0.5
    assert report["n_utterances"] == 2 and report["n_failed"] == 2
    assert report["wer"] < 10
    failed = {u["id"]: u["error"] for u in report["utterances"] if u["error"]}
    assert "broken.flac" in failed["b"] and "missing.flac" in failed["c"] and "no such file" in failed["c"]
    assert "failed:" in result.output


def test_eval_dense_config_is_null(tmp_path):
    from whisper_eas.cli.main import cli

    out = tmp_path / "d.json"
    result = CliRunner().invoke(cli, ["eval", "--manifest", str(DATA / "manifest.tsv"), "--limit", "1", "--dense", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["config"] is None


def test_eval_rejects_bad_flags_without_traceback():
    from whisper_eas.cli.main import cli

    result = CliRunner().invoke(cli, ["eval", "--manifest", str(DATA / "manifest.tsv"), "--layer", "9", "--keep-ratio", "0.5"])
    assert result.exit_code != 0 and "outside this encoder" in result.output
    result = CliRunner().invoke(cli, ["eval", "--manifest", str(DATA / "manifest.tsv"), "--layer", "1", "--keep-ratio", "1.5"])
    assert result.exit_code != 0 and "keep_ratio must be in (0, 1]" in result.output
