"""The graph runner's own logic (TensorRT's runner), driven by ONNX Runtime sessions of the same files.

TensorRT cannot be installed here, so its engines cannot run; but an engine built from these ONNX
files takes and returns the same named tensors. `GraphRunner` is the whole TensorRT runner except
its loader; fed the ONNX Runtime loader's calls, it checks what the runner adds on top of TensorRT
— graph and tensor names, head -> prune -> tail, the self-attention cache handed from step to
step, beam reordering, dropping finished rows — against the ONNX Runtime runner and its IO-binding
decoder, token for token. Engine loading and TensorRT itself stay untested (`requires_tensorrt`
tests in test_engines.py / test_validate.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from whisper_eas.decoding import DecodingOptions
from whisper_eas.exporter.manifest import ExportManifest
from whisper_eas.runners.graphs import GraphRunner
from whisper_eas.runners.onnx_graphs import load_onnx_graphs
from whisper_eas.runners.ort_runner import OrtRunner
from whisper_eas.window_decode import decode_encoded


def _over_ort(directory) -> GraphRunner:
    manifest = ExportManifest.load(directory)
    return GraphRunner(manifest, load_onnx_graphs(manifest))


@pytest.fixture(scope="module")
def encoded(sparse_dir, dev_mels):
    """The graph runner over ONNX Runtime sessions and the ONNX Runtime runner, each loaded once and
    each encoding the four dev windows once (every decoding test below starts from these)."""
    mel, _ = dev_mels
    trt_logic, ort = _over_ort(sparse_dir), OrtRunner(sparse_dir)
    return trt_logic, ort, trt_logic.encode(mel), ort.encode(mel)


def test_trt_runner_logic_encodes_what_the_ort_runner_encodes(encoded):
    trt_logic, _, ours, theirs = encoded
    assert np.array_equal(ours.kept, theirs.kept)
    np.testing.assert_allclose(ours.hidden, theirs.hidden, atol=1e-5, rtol=1e-5)
    assert trt_logic.describe()["prune"]["keep_ratio"] == 0.5


@pytest.mark.parametrize("options", [DecodingOptions(), DecodingOptions(beam_size=3), DecodingOptions(without_timestamps=False)],
                         ids=["greedy", "beam", "timestamps"])
def test_trt_runner_logic_decodes_what_the_ort_runner_decodes(encoded, options):
    trt_logic, ort, ours, theirs = encoded
    n = len(ours.hidden)
    calls = trt_logic.graphs["decoder_step"].calls
    tokens = [r.tokens for r in decode_encoded(trt_logic, ours, options, ["en"] * n)]
    assert tokens == [r.tokens for r in decode_encoded(ort, theirs, options, ["en"] * n)]
    assert trt_logic.graphs["decoder_step"].calls > calls + 1  # this decode stepped through the graph runner


def test_trt_runner_logic_dense_skips_the_prune_engine(encoded, dense_dir, dev_mels):
    mel, _ = dev_mels
    sparse = encoded[0]
    pruned = sparse.graphs["prune"].calls  # the shared runner's sparse encode called it
    encoded = sparse.encode(mel[:2], dense=True)  # the guard's dense re-run
    assert encoded.kept is None and encoded.hidden.shape[1] == 1500
    assert sparse.graphs["prune"].calls == pruned  # not called by the dense encode
    dense = _over_ort(dense_dir)
    assert "prune" not in dense.graphs and dense.prune is None
    np.testing.assert_allclose(dense.encode(mel[:2]).hidden, encoded.hidden, atol=1e-5, rtol=1e-5)
