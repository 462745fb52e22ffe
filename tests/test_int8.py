"""int8 graphs (`export --precision int8`) and the default CPU path (cached ONNX Runtime graphs).

Exports go through the model cache (`runners.cached_export`), so each is made once per cache and
the CLI test reuses the default one.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from whisper_eas.defaults import shipped_config
from prune_configs import COVERAGE
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.evaluation.wer import corpus_wer
from whisper_eas.exporter.manifest import ExportManifest
from whisper_eas.runners.cached_export import cached_export, default_cpu_export

from conftest import DATA


@pytest.fixture(scope="session")
def int8_dir():
    return cached_export("tiny.en", COVERAGE, "int8").folder


def _ops(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}


def test_manifest_records_int8_and_frame_selection_stays_float32(int8_dir):
    manifest = ExportManifest.load(int8_dir, verify=True)
    assert manifest.precision == "int8"
    assert set(manifest.quantization.graphs) == {"encoder_tail", "decoder_cross", "decoder_step"}
    assert manifest.graph_precision("encoder_head") == "fp32" and manifest.graph_precision("prune") == "fp32"
    step = _ops(manifest.path("decoder_step"))
    assert "DynamicQuantizeLinear" in step and "Gemm" not in step  # the output projection is int8 too
    assert not {"DynamicQuantizeLinear", "MatMulInteger"} & _ops(manifest.path("encoder_head"))


def test_int8_graphs_validate_against_pytorch(int8_dir, tiny_model):
    from whisper_eas.validation.parity import FP32, INT8, validate_export

    report = validate_export(int8_dir, DATA / "manifest.tsv", limit=2, batch=2, hf_model=tiny_model)
    rows = {(r.graph, r.output): r for r in report.rows}
    assert rows[("prune", "kept_index")].max_abs == 0  # the same frames as float32 PyTorch
    assert rows[("encoder_head", "head_hidden")].tolerance == FP32["head_hidden"]
    logits = rows[("decoder_step", "logits")]
    assert logits.tolerance == INT8["logits"] and logits.max_abs > FP32["logits"].atol  # really quantized


def test_int8_transcribes_real_speech_like_float32(int8_dir):
    from whisper_eas.runners.ort_runner import OrtRunner
    from whisper_eas.transcribe import Transcriber

    fp32_dir = cached_export("tiny.en", COVERAGE, "fp32").folder
    utts = [u for u in read_manifest(DATA / "manifest.tsv") if u.duration_s <= 30]
    paths = [u.path for u in utts]
    int8 = [o.result.text for o in Transcriber(OrtRunner(int8_dir)).transcribe_many(paths)]
    fp32 = [o.result.text for o in Transcriber(OrtRunner(fp32_dir)).transcribe_many(paths)]
    refs = [u.text for u in utts]
    jfk = next(i for i, u in enumerate(utts) if u.id.startswith("jfk"))
    assert "ask not what your country can do for you" in int8[jfk].lower()
    wer8, words = corpus_wer(list(zip(refs, int8)))
    wer32, _ = corpus_wer(list(zip(refs, fp32)))
    assert wer8 <= wer32 + 100 * 2 / words, (int8, fp32)  # at most two more word errors


def test_untied_projection_is_exact():
    """The Gemm -> MatMul rewrite the quantizer needs changes no value (float32 graph, no quantization)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from whisper_eas.exporter.quantize import untie_output_projection

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((50, 8)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["W", "ids"], ["emb"]),
             helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.zeros(50, np.float32))),
             helper.make_node("Gemm", ["x", "W", "zero"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8]),
                                           helper.make_tensor_value_info("ids", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [3, 50]),
                               helper.make_tensor_value_info("emb", TensorProto.FLOAT, [2, 8])],
                              [numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feed = {"x": rng.standard_normal((3, 8)).astype(np.float32), "ids": np.array([1, 7])}
    before = ort.InferenceSession(model.SerializeToString()).run(None, feed)
    assert untie_output_projection(model) == 1
    assert {n.op_type for n in model.graph.node} == {"Gather", "Constant", "MatMul"}
    after = ort.InferenceSession(model.SerializeToString()).run(None, feed)
    np.testing.assert_allclose(after[0], before[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(after[1], before[1])


def test_default_cpu_backend_is_a_cached_export_and_says_so():
    from whisper_eas.runners.cached_export import default_precision
    from whisper_eas.runners.factory import make_runner

    precision = default_precision("tiny.en")
    folder = cached_export("tiny.en", shipped_config("tiny.en"), precision).folder
    cached = default_cpu_export(None, shipped_config("tiny.en"))
    assert cached.folder == folder and not cached.exported and precision in cached.reason
    runner = make_runner("auto", device="cpu", load=False)
    assert runner.backend == "onnxruntime" and runner.export.precision == precision
    assert "fastest on a CPU" in runner.reason and str(folder) in runner.reason
    assert make_runner("pytorch", device="cpu", load=False).backend == "pytorch"  # --backend still overrides


def test_batched_mode_takes_its_own_cpu_defaults():
    """Batched long-form on a CPU: tiny.en's batched config (the padding trim on every chunk) on
    int8-dec graphs, which held float32's WER there (windows do not condition on each other), not
    the sequential mode's (the trim on whole clips only); the sequential mode runs int8-dec too,
    its guard re-decoding flagged windows with the exact step, and the service int8-proj."""
    from whisper_eas.runners.cached_export import default_precision
    from whisper_eas.runners.factory import make_runner

    assert default_precision("tiny.en", batched=True) == "int8-dec" and default_precision("tiny.en") == "int8-dec"
    assert default_precision("tiny.en", serve=True) == "int8-proj"
    sequential = make_runner("auto", device="cpu", load=False)
    assert sequential.prune == shipped_config("tiny.en") and sequential.prune.scope == "whole"
    assert sequential.approximate_decoder
    assert default_precision("base", batched=True) == default_precision("base")
    runner = make_runner("auto", device="cpu", load=False, batched=True)
    assert runner.export.precision == "int8-dec" and runner.prune == shipped_config("tiny.en", batched=True)
    assert runner.prune.scope == "all"
    assert "int8-dec" in runner.reason


def test_default_cpu_backend_falls_back_with_a_reason(monkeypatch):
    from whisper_eas.runners import cached_export as module

    monkeypatch.setattr("whisper_eas.deps.installed", lambda package: package != "onnxruntime")
    choice = module.default_cpu_export("tiny.en", shipped_config("tiny.en"))
    assert choice.folder is None and "onnxruntime is not installed" in choice.reason


def test_projection_scope_quantizes_only_the_vocabulary_projection(tmp_path):
    """`scope="projection"`: the untied output projection is int8, every other matmul stays float32."""
    from onnx import TensorProto, helper, numpy_helper

    from whisper_eas.exporter.quantize import QuantizeConfig, quantize_graph

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((64, 8)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "L")]
    nodes = [helper.make_node("MatMul", ["x", "L"], ["h"], name="layer"),
             helper.make_node("Gemm", ["h", "W"], ["logits"], name="proj", transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [3, 64])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "g.onnx"))
    for scope, float_matmuls in (("projection", 1), ("all", 0)):
        quantize_graph(tmp_path / "g.onnx", tmp_path / f"{scope}.onnx", QuantizeConfig(scope=scope),
                       graph="decoder_step")
        ops = [n.op_type for n in onnx.load(str(tmp_path / f"{scope}.onnx")).graph.node]
        assert ops.count("MatMul") == float_matmuls and "MatMulInteger" in ops and "Gemm" not in ops


def test_int8_enc_tells_graphs_by_name_not_file():
    from whisper_eas.exporter.quantize import QuantizeConfig

    config = QuantizeConfig.for_precision("int8-enc")
    assert [config.projection_only(g) for g in ("encoder_tail", "decoder_step")] == [False, True]
    assert config.projection_only("encoder_tail.onnx")  # a file name is not a graph name: not the encoder's rule


@pytest.fixture(scope="module")
def int8_enc_dir():
    return cached_export("tiny.en", None, "int8-enc").folder


def test_int8_enc_quantizes_the_encoder_but_fc2_and_keeps_the_rescored_step(int8_enc_dir):
    from whisper_eas.exporter.chunked_attention import CHUNKS
    from whisper_eas.exporter.quantize import QuantizeConfig

    manifest = ExportManifest.load(int8_enc_dir, verify=True)
    assert manifest.precision == "int8-enc" and manifest.quantization.keep_float == ("/fc2/",)
    assert QuantizeConfig.from_dict(manifest.quantization.to_dict()) == manifest.quantization
    assert [manifest.graph_precision(g) for g in ("encoder_head", "encoder_tail", "decoder_cross")] == \
        ["fp32", "int8", "fp32"]
    tail = onnx.load(str(manifest.path("encoder_tail")), load_external_data=False).graph.node
    layers = manifest.dims.encoder_layers
    assert sum(n.op_type == "MatMulInteger" for n in tail) == 5 * layers  # q, k, v, out, fc1 per block
    float_matmuls = [n.name for n in tail if n.op_type == "MatMul"]
    assert sum("/fc2/" in name for name in float_matmuls) == layers  # fc2 stays float32...
    assert len(float_matmuls) == (1 + 2 * CHUNKS) * layers  # ...as do the attention products (per query chunk)
    proj = ExportManifest.load(cached_export("tiny.en", None, "int8-proj").folder)
    assert manifest.files["decoder_step.onnx"] == proj.files["decoder_step.onnx"]  # int8-proj's step, as it is


def test_int8_enc_validates_and_transcribes_real_speech_like_float32(int8_enc_dir, tiny_model):
    from whisper_eas.validation.parity import INT8, validate_export

    report = validate_export(int8_enc_dir, DATA / "manifest.tsv", limit=2, batch=2, hf_model=tiny_model)
    hidden = next(r for r in report.rows if r.graph == "encoder_tail")
    assert hidden.tolerance == INT8[hidden.output] and hidden.max_abs > 1e-3  # really int8, and within its table
    _transcribes_like(int8_enc_dir, cached_export("tiny.en", None, "fp32").folder)


def _transcribes_like(folder, reference_folder) -> None:
    """`folder`'s transcripts of the short test clips: JFK's words, and at most one more word error
    than `reference_folder`'s."""
    from whisper_eas.runners.ort_runner import OrtRunner
    from whisper_eas.transcribe import Transcriber

    utts = [u for u in read_manifest(DATA / "manifest.tsv") if u.duration_s <= 30]
    paths = [u.path for u in utts]
    texts = [o.result.text for o in Transcriber(OrtRunner(folder)).transcribe_many(paths)]
    reference = [o.result.text for o in Transcriber(OrtRunner(reference_folder)).transcribe_many(paths)]
    refs = [u.text for u in utts]
    assert "ask not what your country can do for you" in texts[[u.id for u in utts].index("jfk-inaugural-1961")].lower()
    wer, words = corpus_wer(list(zip(refs, texts)))
    wer_reference, _ = corpus_wer(list(zip(refs, reference)))
    assert wer <= wer_reference + 100 * 1 / words, (texts, reference)


@pytest.fixture(scope="module")
def int8_dec_dir():
    return cached_export("tiny.en", None, "int8-dec").folder


def test_int8_dec_makes_the_decoder_layers_weight_only_int8_and_keeps_the_rescored_projection(int8_dec_dir):
    from whisper_eas.exporter.quantize import QuantizeConfig

    manifest = ExportManifest.load(int8_dec_dir, verify=True)
    assert manifest.precision == "int8-dec" and manifest.quantization.weight_only_bits == 8
    assert QuantizeConfig.from_dict(manifest.quantization.to_dict()) == manifest.quantization
    assert [manifest.graph_precision(g) for g in ("encoder_tail", "decoder_cross", "decoder_step")] == \
        ["fp32", "fp32", "int8"]
    step = onnx.load(str(manifest.path("decoder_step")), load_external_data=False).graph
    layers = manifest.dims.decoder_layers
    nbits = [n for n in step.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 8 * layers  # self q, k, v, out; cross q, out; fc1, fc2 per layer
    assert {next(a.i for a in n.attribute if a.name == "bits") for n in nbits} == {8}
    constants = {i.name for i in step.initializer}
    float_weights = [n.name for n in step.node if n.op_type == "MatMul" and n.input[1] in constants]
    assert float_weights == ["projection_rescore_special_fp32"]  # the rescoring stays float32
    assert "MatMulInteger" in {n.op_type for n in step.node}  # the int8 projection, as int8-proj's
    proj = ExportManifest.load(cached_export("tiny.en", None, "int8-proj").folder)
    assert manifest.files["encoder_tail.onnx"] == proj.files["encoder_tail.onnx"]


def test_int8_dec_validates_and_transcribes_real_speech_like_int8_proj(int8_dec_dir, tiny_model):
    from whisper_eas.validation.parity import INT8, validate_export

    report = validate_export(int8_dec_dir, DATA / "manifest.tsv", limit=2, batch=2, hf_model=tiny_model)
    logits = next(r for r in report.rows if r.graph == "decoder_step" and r.output == "logits")
    assert logits.tolerance == INT8["logits"] and report.passed
    _transcribes_like(int8_dec_dir, cached_export("tiny.en", None, "int8-proj").folder)


def test_int8_dec_holds_the_exact_step_the_guard_re_decodes_with(int8_dec_dir):
    """int8-dec folders carry int8-proj's step (float32 layers) beside their own; the guard checks
    every window of such a runner and re-decodes a flagged one with that step, so a flagged window's
    text is exactly int8-proj's."""
    from whisper_eas.exporter.external_data import data_file
    from whisper_eas.exporter.graph_specs import EXACT_STEP_FILE
    from whisper_eas.guard import GuardOptions
    from whisper_eas.runners.ort_runner import OrtRunner
    from whisper_eas.transcribe import Transcriber

    proj_dir = cached_export("tiny.en", None, "int8-proj").folder
    manifest = ExportManifest.load(int8_dec_dir, verify=True)
    # the same weights (the graphs differ only in the name of the weights file they point to)
    assert manifest.files[data_file(EXACT_STEP_FILE)] == ExportManifest.load(proj_dir).files[data_file("decoder_step.onnx")]
    dec, proj = OrtRunner(int8_dec_dir), OrtRunner(proj_dir)
    assert dec.approximate_decoder and not proj.approximate_decoder
    paths = [u.path for u in read_manifest(DATA / "manifest.tsv") if u.duration_s <= 30]
    every_window = GuardOptions(logprob_threshold=1.0)  # an average log-probability is never above 0
    flagged = list(Transcriber(dec, guard=every_window).transcribe_many(paths))
    reference = list(Transcriber(proj).transcribe_many(paths))
    assert [o.result.text for o in flagged] == [o.result.text for o in reference]
    assert {w.fallback for o in flagged for w in o.result.windows} == {"logprob"}
    assert dec._exact_step is not None
    unflagged = OrtRunner(int8_dec_dir)
    list(Transcriber(unflagged).transcribe_many(paths[:1]))
    assert unflagged._exact_step is None  # a clean window never loads the exact step
