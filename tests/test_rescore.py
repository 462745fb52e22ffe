"""int8 vocabulary projection with exact rescoring (`export --precision int8-proj`, `exporter.rescore`).

What must hold: every logit that can decide a greedy step (the int8 top-k text tokens, which hold
float32's best, and every special token) equals float32's; the rest really is int8; greedy
transcripts of real speech are float32's token for token.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.exporter.manifest import ExportManifest
from whisper_eas.runners.cached_export import cached_export

from conftest import DATA

EOT = 50256  # tiny.en's end-of-text: the first special token


def _small_projection(path, rng, vocab=60, width=8, rows=3):
    from onnx import TensorProto, helper, numpy_helper

    weight = rng.standard_normal((vocab, width)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["W", "ids"], ["emb"]),
             helper.make_node("Gemm", ["x", "W"], ["logits"], name="proj", transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, width]),
                                           helper.make_tensor_value_info("ids", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [rows, vocab]),
                               helper.make_tensor_value_info("emb", TensorProto.FLOAT, [2, width])],
                              [numpy_helper.from_array(weight, "W")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return {"x": rng.standard_normal((rows, width)).astype(np.float32), "ids": np.array([1, 7])}


def test_rewrite_without_quantization_is_the_projection(tmp_path):
    """Left in float32, the rewritten graph (TopK, Gather, batched MatMul, Scatter, Concat) gives
    the Gemm's logits: the wiring puts every value back in its column."""
    import onnxruntime as ort

    from whisper_eas.exporter.rescore import rescore_output_projection

    feed = _small_projection(tmp_path / "g.onnx", np.random.default_rng(0))
    before = ort.InferenceSession(str(tmp_path / "g.onnx")).run(None, feed)
    model = onnx.load(str(tmp_path / "g.onnx"))
    assert rescore_output_projection(model, first_special=50, top_k=4) is not None
    assert "Gemm" not in {n.op_type for n in model.graph.node}
    after = ort.InferenceSession(model.SerializeToString()).run(None, feed)
    np.testing.assert_allclose(after[0], before[0], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(after[1], before[1])  # the embedding lookup shares W, untouched


def test_quantized_rewrite_is_exact_on_candidates_and_specials(tmp_path):
    import onnxruntime as ort

    from whisper_eas.exporter.quantize import QuantizeConfig, quantize_graph

    rng = np.random.default_rng(1)
    feed = _small_projection(tmp_path / "g.onnx", rng, vocab=400, width=32, rows=4)
    exact = ort.InferenceSession(str(tmp_path / "g.onnx")).run(None, feed)[0]
    quantize_graph(tmp_path / "g.onnx", tmp_path / "q.onnx", QuantizeConfig(scope="projection", rescore=8),
                   first_special=350, graph="decoder_step")
    ops = [n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node]
    assert "DynamicQuantizeLinear" in ops and "TopK" in ops and "ScatterElements" in ops
    logits = ort.InferenceSession(str(tmp_path / "q.onnx")).run(None, feed)[0]
    np.testing.assert_allclose(logits[:, 350:], exact[:, 350:], rtol=0, atol=1e-5)  # specials: float32
    for row in range(4):
        best = np.argsort(-exact[row, :350])[:3]  # float32's best three are among int8's top 8
        np.testing.assert_allclose(logits[row, best], exact[row, best], rtol=0, atol=1e-5)
        assert logits[row].argmax() == exact[row].argmax()
    assert np.abs(logits[:, :350] - exact[:, :350]).max() > 1e-4  # the rest really is int8


@pytest.fixture(scope="module")
def folders():
    return cached_export("tiny.en", None, "fp32").folder, cached_export("tiny.en", None, "int8-proj").folder


def test_manifest_records_the_rescored_projection(folders):
    fp32, proj = (ExportManifest.load(f, verify=True) for f in folders)
    assert proj.precision == "int8-proj" and proj.quantization.rescore == 16
    assert proj.quantization.graphs == ("decoder_step",) and proj.graph_precision("decoder_cross") == "fp32"
    for name in ("encoder_head.onnx", "encoder_tail.onnx", "decoder_cross.onnx"):  # float32's, as they are
        assert proj.files[name] == fp32.files[name]
    ops = [n.op_type for n in onnx.load(str(proj.path("decoder_step")), load_external_data=False).graph.node]
    assert "Gemm" not in ops and ops.count("DynamicQuantizeLinear") == 1 and "TopK" in ops


def test_real_decoder_logits_equal_float32_where_they_decide(folders):
    """Teacher-forced on float32's own greedy tokens of a real utterance: at every step the
    specials and float32's five best text tokens have float32's values, and the argmax agrees."""
    from whisper_eas.audio import load_audio
    from whisper_eas.features import window_features
    from whisper_eas.runners.ort_runner import OrtRunner

    runners = [OrtRunner(f) for f in folders]
    utt = next(u for u in read_manifest(DATA / "manifest.tsv") if u.id.startswith("jfk"))
    encoded = runners[0].encode(window_features(load_audio(utt.path))[None])
    sessions = [r.decoder(encoded) for r in runners]
    tokens = np.array([[50257, 50363]])  # <|startoftranscript|> <|notimestamps|>
    for _ in range(30):
        exact, rescored = (s.step(tokens, [tokens.shape[1] - 1])[0, -1] for s in sessions)
        np.testing.assert_allclose(rescored[EOT:], exact[EOT:], rtol=0, atol=2e-4)
        best = np.argsort(-exact[:EOT])[:5]
        np.testing.assert_allclose(rescored[best], exact[best], rtol=0, atol=2e-4)
        assert rescored.argmax() == exact.argmax()
        if exact.argmax() == EOT:
            break
        tokens = np.array([[int(exact.argmax())]])
    assert np.abs(rescored[:EOT] - exact[:EOT]).mean() > 1e-3  # int8 outside the candidates


def test_greedy_transcripts_equal_float32_on_real_speech(folders):
    from whisper_eas.runners.ort_runner import OrtRunner
    from whisper_eas.transcribe import Transcriber

    paths = [u.path for u in read_manifest(DATA / "manifest.tsv")]
    fp32, proj = ([o.result for o in Transcriber(OrtRunner(f)).transcribe_many(paths)] for f in folders)
    assert [[s.tokens for s in r.segments] for r in proj] == [[s.tokens for s in r.segments] for r in fp32]
    assert "ask not what your country can do for you" in proj[3].text.lower()
