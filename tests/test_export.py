"""ONNX export of the real tiny.en: graphs, manifest, per-graph parity with PyTorch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from conftest import AUDIO
from onnx_exports import SPARSE
from whisper_eas.config import PruneConfig
from whisper_eas.exporter.external_data import read_graph
from whisper_eas.exporter.graph_specs import ModelDims, export_specs
from whisper_eas.exporter.manifest import ExportError, ExportManifest
from whisper_eas.exporter.reference import encoder_cases
from whisper_eas.exporter.prune_graph import export_prune
from whisper_eas.io_utils import sha256_file
from whisper_eas.selection import prune_hidden


@pytest.fixture(scope="module")
def reference(tiny_model, dev_mels):
    mel = dev_mels[0][:2]
    return encoder_cases(tiny_model, SPARSE, mel)[0]


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _dims(model_proto, name, inputs=True):
    values = model_proto.graph.input if inputs else model_proto.graph.output
    value = next(v for v in values if v.name == name)
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_graphs_pass_the_checker_and_follow_their_specs(sparse_dir, tiny_model):
    specs = export_specs(ModelDims.from_hf_config(tiny_model.config), SPARSE)
    assert list(specs) == ["encoder_head", "prune", "encoder_tail", "decoder_cross", "decoder_step"]
    for spec in specs.values():
        path = sparse_dir / spec.file
        onnx.checker.check_model(read_graph(path))  # the weights file is hard-linked (test copies)
        proto = onnx.load(str(path), load_external_data=False)
        assert [i.name for i in proto.graph.input] == spec.input_names
        assert [o.name for o in proto.graph.output] == spec.output_names
        for tensor in spec.inputs:
            assert _dims(proto, tensor.name) == list(tensor.shape), (spec.file, tensor.name)
    assert specs["prune"].outputs[0].shape == ("batch", 750, 384)
    assert specs["encoder_tail"].inputs[0].shape == ("batch", "frames", 384)


def test_large_graphs_keep_their_weights_beside_them(sparse_dir, tmp_path):
    """ONNX Runtime maps a weights file instead of copying a protobuf (docs/benchmarks.md, "Graph
    weights outside the graph"); the weights file is hashed like the graph, and a graph whose
    weights location leads out of its folder is refused before anything is read."""
    files = json.loads((sparse_dir / "manifest.json").read_text())["files"]
    for graph in ("encoder_tail.onnx", "decoder_step.onnx", "align.onnx"):
        assert f"{graph}.data" in files and (sparse_dir / graph).stat().st_size < 1 << 20
    assert "prune.onnx.data" not in files and not (sparse_dir / "prune.onnx.data").exists()  # small: whole
    proto = onnx.load(str(sparse_dir / "decoder_cross.onnx"), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere.data"
    onnx.save(proto, str(tmp_path / "decoder_cross.onnx"))
    with pytest.raises(ExportError, match="leads outside the folder|not a file inside"):
        read_graph(tmp_path / "decoder_cross.onnx")


def test_chunked_attention_is_bit_identical(dense_dir, tiny_model, tmp_path):
    """The exported encoder computes attention a quarter of the query rows at a time (a quarter of
    the scores' memory); its outputs equal the whole-matrix graph's bit for bit, for the frame counts
    that occur (the trim keeps >= 564 frames, pruning >= 10% of 1500)."""
    from whisper_eas.exporter.chunked_attention import CHUNKS
    from whisper_eas.exporter.modules import EncoderTail
    from whisper_eas.exporter.tracing import trace_to_onnx

    spec = export_specs(ModelDims.from_hf_config(tiny_model.config), None)["encoder_tail"]
    whole = trace_to_onnx(EncoderTail(tiny_model, 0), (torch.randn(1, 37, 384),), spec, tmp_path / "whole.onnx", 17)
    graphs = {name: onnx.load(str(path), load_external_data=False).graph
              for name, path in (("whole", whole), ("chunked", dense_dir / "encoder_tail.onnx"))}
    softmaxes = {name: sum(n.op_type == "Softmax" for n in g.node) for name, g in graphs.items()}
    assert softmaxes == {"whole": 4, "chunked": 4 * CHUNKS}
    sessions = {name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                for name, path in (("whole", whole), ("chunked", dense_dir / "encoder_tail.onnx"))}
    rng = np.random.default_rng(0)
    for frames in (150, 565, 1001, 1500):
        x = rng.standard_normal((2, frames, 384), dtype=np.float32)
        a, b = (sessions[name].run(None, {"tail_input": x})[0] for name in ("whole", "chunked"))
        assert np.array_equal(a, b), frames


@pytest.fixture(scope="module")
def fused_dense_dir(tmp_path_factory, tiny_model):
    from onnx_exports import exported

    return exported(tmp_path_factory, tiny_model, None, attention="fused")


def test_fused_attention_equals_the_standard_graphs(dense_dir, fused_dense_dir, dev_mels):
    """`--attention fused`: the encoder attention is one MultiHeadAttention node per block; its
    hidden states are the standard graphs' within float32 noise, and the transcripts are the same."""
    from whisper_eas.runners.ort_runner import OrtRunner
    from whisper_eas.transcribe import Transcriber

    def ops(folder):
        graph = onnx.load(str(folder / "encoder_tail.onnx"), load_external_data=False).graph
        return [n.op_type for n in graph.node]

    assert ops(fused_dense_dir).count("MultiHeadAttention") == 4 and "Softmax" not in ops(fused_dense_dir)
    assert "MultiHeadAttention" not in ops(dense_dir)
    assert ExportManifest.load(fused_dense_dir).attention == "fused" and ExportManifest.load(dense_dir).attention == "standard"
    mel = dev_mels[0].numpy()

    def encode(folder):
        head, tail = (ort.InferenceSession(str(folder / f"{g}.onnx"), providers=["CPUExecutionProvider"])
                      for g in ("encoder_head", "encoder_tail"))
        return tail.run(None, {"tail_input": head.run(None, {"mel": mel})[0]})[0]

    standard, fused = encode(dense_dir), encode(fused_dense_dir)
    assert np.abs(standard - fused).max() < 1e-3 * np.abs(standard).max()
    clips = [AUDIO / "jfk-inaugural-1961.flac", AUDIO / "cathy-arctic_a0001.flac"]
    texts = [[o.result.text for o in Transcriber(OrtRunner(folder)).transcribe_many(clips)]
             for folder in (dense_dir, fused_dense_dir)]
    assert texts[0] == texts[1] and "ask not" in texts[0][0]


def test_engines_need_the_standard_attention(tmp_path):
    from whisper_eas.cli.export_cmd import command

    result = CliRunner().invoke(command, ["--out", str(tmp_path / "e"), "--engines", "--attention", "fused"])
    assert result.exit_code == 2 and "--engines needs --attention standard" in result.output
    assert not (tmp_path / "e").exists()  # refused before anything is exported


def test_manifest_records_model_config_hashes_and_versions(sparse_dir):
    data = json.loads((sparse_dir / "manifest.json").read_text())
    assert data["model"] == "tiny.en" and data["opset"] == 17 and data["split_layer"] == 1
    assert PruneConfig.from_dict(data["config"]) == SPARSE
    step_inputs = {i["name"]: i for i in data["graphs"]["decoder_step"]["inputs"]}
    assert step_inputs["self_k_0"] == {"name": "self_k_0", "dtype": "float32", "shape": ["batch", 6, "past", 64]}
    assert step_inputs["logit_positions"] == {"name": "logit_positions", "dtype": "int64", "shape": ["wanted"]}
    for name in ("torch", "transformers", "onnx", "onnxruntime"):
        assert data["versions"][name] not in ("", "absent")
    for name, digest in data["files"].items():
        assert sha256_file(sparse_dir / name) == digest
    assert ExportManifest.load(sparse_dir).config == SPARSE


def test_a_folder_from_before_logit_positions_says_to_re_export(sparse_dir, tmp_path):
    """Older decoder steps projected every position (the runners sliced them); now they are refused."""
    data = json.loads((sparse_dir / "manifest.json").read_text())
    step = data["graphs"]["decoder_step"]
    step["inputs"] = [i for i in step["inputs"] if i["name"] != "logit_positions"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ExportError, match=r"decoder_step\.onnx .*re-run whisper-eas export"):
        ExportManifest.load(tmp_path, verify=False)


def test_encoder_graphs_match_pytorch(sparse_dir, reference):
    mel_feed, head_ref = reference["encoder_head"]
    hidden, scores = _session(sparse_dir / "encoder_head.onnx").run(None, mel_feed)
    assert np.abs(hidden - head_ref["head_hidden"]).max() < 1e-4
    assert np.abs(scores - head_ref["frame_scores"]).max() < 1e-6
    prune_feed, prune_ref = reference["prune"]
    kept, index = _session(sparse_dir / "prune.onnx").run(None, prune_feed)
    np.testing.assert_array_equal(index, prune_ref["kept_index"])
    np.testing.assert_array_equal(kept, prune_ref["kept_hidden"])
    tail_feed, tail_ref = reference["encoder_tail"]
    out = _session(sparse_dir / "encoder_tail.onnx").run(None, tail_feed)[0]
    # 1e-4 absolute, relative 1e-4 for Whisper's large outlier channel (see validation/parity.py)
    np.testing.assert_allclose(out, tail_ref["encoder_hidden"], atol=1e-4, rtol=1e-4)


def test_dense_export_reuses_the_decoder_and_has_no_prune(dense_dir, sparse_dir):
    dense, sparse = ExportManifest.load(dense_dir), ExportManifest.load(sparse_dir)
    assert dense.config is None and dense.split_layer == 0
    assert list(dense.graphs) == ["encoder_head", "encoder_tail", "decoder_cross", "decoder_step"]
    assert not (dense_dir / "prune.onnx").exists()
    assert dense.graphs["encoder_head"].output_names == ["head_hidden"]
    assert dense.decoder_key == sparse.decoder_key
    for name in ("decoder_cross.onnx", "decoder_step.onnx"):
        assert dense.files[name] == sparse.files[name]


@pytest.mark.parametrize(
    "config",
    [
        PruneConfig(layer=1, keep_ratio=None, mass=0.9, strategy="coverage"),
        PruneConfig(layer=1, keep_ratio=0.4, merge=True),
        PruneConfig(layer=1, keep_ratio=0.4, strategy="uniform"),
    ],
    ids=lambda c: c.format(),
)
def test_prune_graph_implements_every_strategy(config, reference, tiny_model, tmp_path):
    dims = ModelDims.from_hf_config(tiny_model.config)
    session = _session(export_prune(config, dims, tmp_path / "prune.onnx"))
    feed = reference["prune"][0]
    hidden, scores = (torch.from_numpy(feed[k]) for k in ("head_hidden", "frame_scores"))
    for rows in (slice(0, 2), slice(1, 2)):  # the kept count of adaptive configs follows the input
        names = [i.name for i in session.get_inputs()]
        kept, index = session.run(None, {n: feed[n][rows] for n in names})
        ref_kept, ref_index = prune_hidden(hidden[rows], scores[rows] if config.uses_attention else None, config)
        np.testing.assert_array_equal(index, ref_index.numpy())
        np.testing.assert_allclose(kept, ref_kept.numpy(), atol=1e-6, rtol=0)


def test_export_rejects_bad_requests(tiny_model, tmp_path):
    from whisper_eas.exporter.export import export_model

    with pytest.raises(ValueError, match="opset 13"):
        export_model("tiny.en", SPARSE, tmp_path, opset=13, hf_model=tiny_model)
    with pytest.raises(ValueError, match="layer 7 is outside"):
        export_model("tiny.en", PruneConfig(layer=7, keep_ratio=0.5), tmp_path, hf_model=tiny_model)
