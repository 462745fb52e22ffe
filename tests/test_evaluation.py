"""Manifest parsing, WER scoring and the eval command on real audio."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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


def _manifest(tmp_path, rows: str):
    (tmp_path / "audio").mkdir(exist_ok=True)
    manifest = tmp_path / "m.tsv"
    manifest.write_text(HEADER + rows)
    return manifest


def test_eval_fails_loudly_when_nothing_is_scored(tmp_path):
    """Every row failed, a header-only manifest, an empty reference, and a --limit below 1:
    never "WER 0.00%" with exit 0."""
    from whisper_eas.cli.main import cli

    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "broken.flac").write_bytes(b"not audio at all")
    failed = _manifest(tmp_path, "b\taudio/broken.flac\t1.0\tsomething\nc\taudio/missing.flac\t1.0\tsomething\n")
    result = CliRunner().invoke(cli, ["eval", "--manifest", str(failed), "--dense"])
    assert result.exit_code == 1 and "all 2 utterance(s) failed" in result.output and "WER 0.00" not in result.output
    assert "Traceback" not in result.output
    header_only = tmp_path / "h.tsv"
    header_only.write_text(HEADER)
    result = CliRunner().invoke(cli, ["eval", "--manifest", str(header_only), "--dense"])
    assert result.exit_code == 1 and "no utterances" in result.output and "h.tsv" in result.output
    for bad in ("0", "-5"):
        result = CliRunner().invoke(cli, ["eval", "--manifest", str(DATA / "manifest.tsv"), "--limit", bad, "--dense"])
        assert result.exit_code == 2 and "--limit" in result.output
    with pytest.raises(ManifestError, match="limit must be >= 1"):
        read_manifest(DATA / "manifest.tsv", limit=0)


def test_eval_scores_long_files_and_empty_references_explicitly(tmp_path):
    """A 60 s recording is decoded long-form (several windows) and scored whole; an empty reference
    has no per-utterance WER, its words count as insertions, and the report says so."""
    from whisper_eas.cli.main import cli

    dev = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "speech-dev"
    long_id, long_path, _, long_text = next(
        line.split("\t") for line in (dev / "manifest-long.tsv").read_text().splitlines()[1:] if "cathy" in line)
    shutil.copy(dev / long_path, tmp_path / "long.flac")
    shutil.copy(AUDIO / "ls-test-clean-1089-134691-0000.flac", tmp_path / "short.flac")
    manifest = tmp_path / "m.tsv"
    manifest.write_text(HEADER + f"{long_id}\tlong.flac\t60.3\t{long_text}\nempty\tshort.flac\t2.0\t\n")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(cli, ["eval", "--manifest", str(manifest), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    long, empty = report["utterances"]
    assert long["windows"] >= 2 and long["wer"] < 15 and long["error"] is None
    assert empty["wer"] is None and empty["note"] == "empty reference" and empty["n_words"] == 0
    assert empty["errors"] == len(empty["hyp"].split()) > 0
    assert report["n_empty_references"] == 1 and report["n_errors"] == long["errors"] + empty["errors"]
    assert abs(report["wer"] - 100 * report["n_errors"] / report["n_words"]) < 1e-9
    assert "1 empty reference" in result.output


def test_eval_batched_scores_a_long_recording_by_its_speech_chunks(tmp_path):
    """`eval --batched` transcribes as `trt-transcribe --batched` does (VAD chunks, no previous text)
    and says so in the report."""
    from whisper_eas.cli.main import cli

    dev = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "speech-dev"
    long_id, _, _, long_text = next(
        line.split("\t") for line in (dev / "manifest-long.tsv").read_text().splitlines()[1:] if "cathy" in line)
    manifest = tmp_path / "m.tsv"
    manifest.write_text(HEADER + f"{long_id}\t{AUDIO / 'long-cathy-a0001-a0019.flac'}\t60.3\t{long_text}\n")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(cli, ["eval", "--manifest", str(manifest), "--dense", "--batched", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["mode"] == "batched" and "batched" in result.output
    (long,) = report["utterances"]
    assert long["windows"] >= 3 and long["wer"] < 15 and long["error"] is None
