"""`whisper-eas bench` end to end on two real files: every backend runs, side by side, with WER."""

from __future__ import annotations

import json

from click.testing import CliRunner

from conftest import DATA
from whisper_eas.cli.main import cli


def test_bench_runs_every_backend_side_by_side(tmp_path, tmp_path_factory, tiny_model):
    from whisper_eas.benchmark.cpu import ENCODER_CONFIGS

    from onnx_exports import exported, linked_copy
    from prune_configs import COVERAGE

    # the four folders bench exports (dense, the benchmarked config, two encoder configs), made by
    # export_model once per source version and shared with the other ONNX tests: bench takes a
    # folder whose manifest has the config it wants, as it does on a second run
    wanted = {"dense": None, "sparse": COVERAGE, **ENCODER_CONFIGS}
    for key, config in wanted.items():
        linked_copy(exported(tmp_path_factory, tiny_model, config), tmp_path / "exports" / key)
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    args = ["bench", "--manifest", str(DATA / "manifest.tsv"), "--limit", "2", "--repeats", "1", "--batch-size", "2",
            "--prune", "coverage@4+merge L1 k0.5", "--export-dir", str(tmp_path / "exports"), "--json", str(out_json), "--markdown", str(out_md)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(out_json.read_text())
    rows = {r["name"]: r for r in payload["results"]}
    expected = {"onnxruntime dense", "onnxruntime sparse", "pytorch dense", "pytorch sparse", "faster-whisper int8",
                "faster-whisper float32", "ct2-windows int8", "encoder onnxruntime dense",
                "encoder onnxruntime published", "encoder onnxruntime ours"}
    assert expected <= set(rows)
    assert payload["n_utterances"] == 2 and all(r["median"] > 0 for r in rows.values())
    # the same files through every backend: dense ONNX Runtime and dense PyTorch agree word for word
    assert rows["onnxruntime dense"]["texts"] == rows["pytorch dense"]["texts"]
    assert rows["onnxruntime dense"]["wer"] < 30
    assert "vs faster-whisper int8" in out_md.read_text()


def test_bench_longform_named_configs_take_turns_per_file(tmp_path):
    """`bench --longform --prune C --turns file`: rows for a named sparse config beside dense,
    sequential and batched, timed per file through the shared harness (what benchmark/batched.py did)."""
    out_json, out_md = tmp_path / "lf.json", tmp_path / "lf.md"
    args = ["bench", "--longform", "--manifest", str(DATA / "manifest.tsv"), "--limit", "2", "--repeats", "1",
            "--threads", "1", "--precisions", "fp32", "--configs", "dense", "--prune", "coverage@4+merge L1 k0.5",
            "--no-faster-whisper", "--turns", "file", "--json", str(out_json), "--markdown", str(out_md)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(out_json.read_text())
    rows = {r["name"]: r for r in payload["results"]}
    sparse = "ours onnxruntime coverage@4+merge L1 k0.5 fp32"
    assert {"ours onnxruntime dense fp32", sparse, f"{sparse} batched 8", "ours onnxruntime dense fp32 batched 8"} == set(rows)
    assert payload["args"]["prune"] == ["coverage@4+merge L1 k0.5"] and payload["args"]["turns"] == "file"
    for row in rows.values():
        assert len(row["file_times"]) == 1 and len(row["file_times"][0]) == 2 and all(t > 0 for t in row["file_times"][0])
        assert row["median"] == sum(row["file_times"][0]) and row["wer"] < 30
    assert sparse in out_md.read_text()
