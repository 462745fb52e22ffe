"""ONNX Runtime backend: same transcripts as PyTorch on real audio; clear errors on broken folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from onnx_exports import SPARSE, linked_copy
from whisper_eas.decoding import DecodingOptions
from whisper_eas.exporter.manifest import ExportError
from whisper_eas.runners.factory import make_runner
from whisper_eas.runners.ort_runner import OrtDecoderSession, OrtRunner
from whisper_eas.runners.torch_runner import TorchRunner
from whisper_eas.window_decode import decode_encoded


@pytest.fixture(scope="module")
def all_mels():
    from whisper_eas.audio import load_audio
    from whisper_eas.evaluation.manifest import read_manifest
    from whisper_eas.features import window_features

    from conftest import DATA

    return torch.from_numpy(np.stack([window_features(load_audio(u.path)) for u in read_manifest(DATA / "manifest.tsv")]))


def _decode(runner, mel, dense=False, **options):
    encoded = runner.encode(mel, dense=dense)
    return encoded, decode_encoded(runner, encoded, DecodingOptions(**options))


@pytest.fixture(scope="module")
def sparse_runner(sparse_dir):
    return OrtRunner(sparse_dir)


@pytest.fixture(scope="module")
def pytorch(tiny_model, all_mels):
    """PyTorch backend's greedy results on all test files: sparse and dense."""
    runner = TorchRunner("tiny.en", prune=SPARSE, hf_model=tiny_model)
    return {"sparse": _decode(runner, all_mels), "dense": _decode(runner, all_mels, dense=True)}


def test_sparse_greedy_transcripts_equal_pytorch(sparse_runner, pytorch, all_mels):
    encoded, results = _decode(sparse_runner, all_mels)
    ref_encoded, ref_results = pytorch["sparse"]
    assert [r.tokens for r in results] == [r.tokens for r in ref_results]
    assert results[3].text.startswith("And so my fellow Americans")
    assert np.array_equal(encoded.kept, ref_encoded.kept) and encoded.n_kept == 750


@pytest.mark.parametrize("export", ["sparse", "dense"])
def test_dense_greedy_transcripts_equal_pytorch(export, sparse_runner, dense_dir, pytorch, all_mels):
    """`dense=True` on a sparse export (the quality guard's re-run), and a dense export."""
    runner = sparse_runner if export == "sparse" else make_runner("onnxruntime", engine_dir=dense_dir)
    encoded, results = _decode(runner, all_mels, dense=True)
    assert encoded.kept is None and encoded.n_kept == 1500
    assert [r.tokens for r in results] == [r.tokens for r in pytorch["dense"][1]]


def test_encoder_chunks_equal_one_batch(sparse_dir, sparse_runner, all_mels):
    """The runner encodes one window at a time by default; a whole-batch call gives the same output."""
    whole = OrtRunner(sparse_dir, encoder_batch=len(all_mels)).encode(all_mels)
    chunked = sparse_runner.encode(all_mels)
    assert sparse_runner.encoder_batch == 1 and chunked.batch == whole.batch == len(all_mels)
    assert np.array_equal(chunked.kept, whole.kept)
    assert abs(chunked.hidden - whole.hidden).max() < 1e-4


def test_ended_windows_leave_the_batch_without_changing_tokens(sparse_runner, all_mels, monkeypatch):
    """Greedy decoding drops rows that reached end-of-text; the others decode as they would alone."""
    sizes = []
    select = OrtDecoderSession.select
    monkeypatch.setattr(OrtDecoderSession, "select", lambda self, rows: (sizes.append(len(rows)), select(self, rows)))
    _, batched = _decode(sparse_runner, all_mels)
    alone = [_decode(sparse_runner, all_mels[i : i + 1])[1][0] for i in range(len(all_mels))]
    assert sizes and sizes[0] < len(all_mels), "no row was dropped: the test files should differ in length"
    assert [r.tokens for r in batched] == [r.tokens for r in alone]


@pytest.mark.parametrize("backend", ["onnxruntime", "pytorch"])
def test_prompt_logits_only_for_the_positions_asked(backend, sparse_runner, tiny_model, all_mels):
    """`step(tokens, positions)` projects only those positions (the graph's `logit_positions`),
    with the same values as a step projecting them all, and the same cache after it."""
    runner = sparse_runner if backend == "onnxruntime" else TorchRunner("tiny.en", prune=SPARSE, hf_model=tiny_model)
    encoded = runner.encode(all_mels[:2])
    prompt = np.array([[50361, 262, 3797, 50257], [50361, 314, 716, 50257]])  # prev, 2 words, start
    full, some = runner.decoder(encoded), runner.decoder(encoded)
    everything = full.step(prompt)
    wanted = some.step(prompt, [1, 3])
    assert everything.shape[1] == 4 and wanted.shape[1] == 2
    np.testing.assert_allclose(wanted, everything[:, [1, 3]], rtol=0, atol=2e-5)
    following = np.array([[50362], [50362]])
    np.testing.assert_allclose(some.step(following), full.step(following), rtol=0, atol=2e-5)


def test_beam_search_reorders_the_cache(sparse_runner, tiny_model, all_mels):
    mel = all_mels[2:3]
    _, results = _decode(sparse_runner, mel, beam_size=2)
    _, ref = _decode(TorchRunner("tiny.en", prune=SPARSE, hf_model=tiny_model), mel, beam_size=2)
    assert [r.tokens for r in results] == [r.tokens for r in ref]


def test_factory_takes_config_from_the_manifest(sparse_dir, dense_dir):
    runner = make_runner("onnxruntime", model=sparse_dir)  # an export folder given as the model
    assert runner.prune == SPARSE and runner.model_name == "tiny.en"
    assert make_runner("onnxruntime", engine_dir=dense_dir).prune is None
    assert runner.describe()["engine_dir"] == str(sparse_dir)
    cached = make_runner("onnxruntime", model="tiny.en", load=False)  # no folder: the cached export, as auto
    assert cached.model_name == "tiny.en" and "cached export" in cached.reason


def test_missing_graph_is_named(sparse_dir, tmp_path):
    broken = linked_copy(sparse_dir, tmp_path / "e")
    (broken / "encoder_tail.onnx").unlink()
    with pytest.raises(ExportError, match=r"encoder_tail\.onnx: missing"):
        OrtRunner(broken).load()


def test_not_an_export_folder_is_named(tmp_path):
    with pytest.raises(ExportError, match=r"manifest\.json: not found"):
        OrtRunner(tmp_path)


def test_corrupted_manifest_is_named(sparse_dir, tmp_path):
    broken = linked_copy(sparse_dir, tmp_path / "e")
    (broken / "manifest.json").write_text('{"format": "whisper-eas-onnx", ')
    with pytest.raises(ExportError, match=r"manifest\.json: not valid JSON"):
        OrtRunner(broken).load()


def test_manifest_config_that_does_not_match_the_graphs(sparse_dir, tmp_path):
    broken = linked_copy(sparse_dir, tmp_path / "e")
    data = json.loads((broken / "manifest.json").read_text())
    data["config"]["keep_ratio"] = 0.3  # prune.onnx keeps 750 frames, not 450
    (broken / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ExportError, match=r"prune\.onnx does not match"):
        OrtRunner(broken).load()


def test_changed_graph_fails_its_checksum(sparse_dir, tmp_path):
    broken = linked_copy(sparse_dir, tmp_path / "e", copy=("manifest.json", "prune.onnx"))
    with open(broken / "prune.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ExportError, match=r"prune\.onnx: sha256 differs"):
        OrtRunner(broken).load()


def test_an_unchanged_folder_is_not_hashed_again_a_changed_file_is(sparse_dir, tmp_path, monkeypatch):
    """The second load of a folder reads no file for its checksums (stamps in the model cache);
    a graph written after the stamped load is hashed again and refused."""
    from whisper_eas import hash_stamps

    monkeypatch.setenv("WHISPER_EAS_HOME", str(tmp_path / "home"))
    folder = linked_copy(sparse_dir, tmp_path / "e", copy=("manifest.json", "prune.onnx"))
    hashed: list[str] = []
    real = hash_stamps.sha256_file
    monkeypatch.setattr(hash_stamps, "sha256_file", lambda path: hashed.append(Path(path).name) or real(path))
    OrtRunner(folder).load()
    assert "prune.onnx" in hashed and "decoder_step.onnx" in hashed
    hashed.clear()
    OrtRunner(folder).load()
    assert hashed == []
    with open(folder / "prune.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ExportError, match=r"prune\.onnx: sha256 differs"):
        OrtRunner(folder).load()
    assert hashed == ["prune.onnx"]
