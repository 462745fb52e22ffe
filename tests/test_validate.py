"""Polygraphy validation: passes on a good export, catches a perturbed weight with its table."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from conftest import DATA
from onnx_exports import linked_copy
from whisper_eas.exporter.external_data import read_graph
from whisper_eas.exporter.manifest import ExportError
from whisper_eas.io_utils import sha256_file
from whisper_eas.validation.parity import ParityError, validate_export

MANIFEST = DATA / "manifest.tsv"


@pytest.fixture(scope="module")
def perturbed_dir(sparse_dir, tmp_path_factory):
    """A copy whose tail has one weight changed and whose manifest was re-hashed to match."""
    out = linked_copy(sparse_dir, tmp_path_factory.mktemp("perturbed") / "e", copy=("manifest.json",))
    (out / "encoder_tail.onnx").unlink()
    model = read_graph(sparse_dir / "encoder_tail.onnx")  # its weights file is hard-linked
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)) if len(t.dims) == 1 else 0)
    weights = numpy_helper.to_array(init).copy()
    weights[: len(weights) // 8] += 0.05  # a slice of a 1-D weight (a norm or bias)
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    onnx.save(model, str(out / "encoder_tail.onnx"))
    data = json.loads((out / "manifest.json").read_text())
    data["files"]["encoder_tail.onnx"] = sha256_file(out / "encoder_tail.onnx")
    (out / "manifest.json").write_text(json.dumps(data))
    return out


def test_every_graph_output_passes(sparse_dir, tiny_model):
    report = validate_export(sparse_dir, MANIFEST, limit=2, hf_model=tiny_model)
    assert report.passed and report.n_utterances == 2
    checked = {(r.graph, r.output) for r in report.rows}
    assert ("encoder_head", "frame_scores") in checked and ("prune", "kept_index") in checked
    assert ("decoder_step", "new_self_k") in checked and ("decoder_step", "logits") in checked
    by_output = {r.output: r for r in report.rows}
    assert by_output["head_hidden"].max_abs < 1e-4 and by_output["kept_index"].max_abs == 0
    assert "| encoder_tail | encoder_hidden | onnxruntime |" in report.table()


def test_perturbed_weight_is_caught_with_the_table(perturbed_dir, tiny_model):
    with pytest.raises(ParityError) as caught:
        validate_export(perturbed_dir, MANIFEST, limit=2, hf_model=tiny_model, graphs=["encoder_tail", "prune"])
    failures = caught.value.report.failures
    assert [(f.graph, f.output) for f in failures] == [("encoder_tail", "encoder_hidden")]
    assert failures[0].max_abs > 1e-2
    message = str(caught.value)
    assert "| graph | output | runner | max abs | max rel |" in message
    assert "| prune | kept_index | onnxruntime | 0 |" in message
    assert "parity check failed for: encoder_tail.encoder_hidden" in message


def test_cli_exits_non_zero_on_a_mismatch(perturbed_dir):
    from whisper_eas.cli.main import cli

    result = CliRunner().invoke(cli, ["validate", str(perturbed_dir), "--manifest", str(MANIFEST), "--limit", "1",
                                      "--graph", "encoder_tail"])
    assert result.exit_code == 1
    assert "| encoder_tail | encoder_hidden | onnxruntime |" in result.output and "NO |" in result.output


def test_unchanged_manifest_refuses_a_changed_graph(perturbed_dir, sparse_dir, tmp_path):
    stale = linked_copy(perturbed_dir, tmp_path / "e", copy=())
    (stale / "manifest.json").unlink()
    (stale / "manifest.json").symlink_to(sparse_dir / "manifest.json")
    with pytest.raises(ExportError, match=r"encoder_tail\.onnx: sha256 differs"):
        validate_export(stale, MANIFEST, limit=1)


def test_unknown_graph_is_named(sparse_dir):
    with pytest.raises(ValueError, match="no graph"):
        validate_export(sparse_dir, MANIFEST, limit=1, graphs=["encoder"])


@pytest.mark.requires_tensorrt
def test_tensorrt_joins_the_comparison(sparse_dir, tiny_model):
    report = validate_export(sparse_dir, MANIFEST, limit=2, hf_model=tiny_model, trt=True,
                             graphs=["encoder_head", "encoder_tail", "decoder_cross"])
    assert {r.runner for r in report.rows} == {"onnxruntime", "tensorrt-fp16"}
