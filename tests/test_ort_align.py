"""Word timestamps on ONNX Runtime: the export's alignment graph against the PyTorch alignment
(same words, boundaries within 0.02 s on jfk, dense and pruned), and a folder exported before the
graph existed: it still transcribes, and word timestamps say to re-export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from whisper_eas.alignment import WordTimestampsUnsupported
from whisper_eas.exporter.align_graph import ALIGN_FILE, AlignmentGraph, alignment_heads
from whisper_eas.runners.ort_runner import OrtRunner
from whisper_eas.runners.torch_runner import TorchRunner
from whisper_eas.transcribe import Transcriber

from conftest import AUDIO
from onnx_exports import SPARSE, exported, linked_copy

JFK = AUDIO / "jfk-inaugural-1961.flac"
ort = pytest.importorskip("onnxruntime")


def _words(runner):
    result = Transcriber(runner, batch_size=1).transcribe(JFK, word_timestamps=True)
    return [(w.word, w.start, w.end) for s in result.segments for w in s.words], result.text


def test_align_graph_equals_the_hooked_decoder(tiny_model):
    """The graph's module gives the scores the hooks read from the Hugging Face decoder."""
    from whisper_eas.alignment import _cross_attention

    heads = alignment_heads(tiny_model)
    hidden = torch.randn(1, 700, tiny_model.config.d_model, generator=torch.Generator().manual_seed(0))
    tokens = [50257, 50362, 400, 370, 452, 1000, 2000, 50256]
    with torch.no_grad():
        scores, logits = AlignmentGraph(tiny_model, heads)(torch.tensor([tokens]), hidden)
        ref_scores, ref_logits = _cross_attention(tiny_model, hidden, tokens, heads)
    assert scores.shape == (len(heads), len(tokens), 700)
    np.testing.assert_allclose(scores.numpy(), ref_scores, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(logits.numpy(), ref_logits, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("config", [None, SPARSE], ids=["dense", "pruned"])
def test_ort_word_timestamps_match_pytorch(tmp_path_factory, tiny_model, config):
    folder = exported(tmp_path_factory, tiny_model, config)
    assert ALIGN_FILE in json.loads((folder / "manifest.json").read_text())["files"]
    ours, text = _words(OrtRunner(folder))
    reference, ref_text = _words(TorchRunner("tiny.en", prune=config, hf_model=tiny_model))
    assert text == ref_text and [w for w, _, _ in ours] == [w for w, _, _ in reference]
    delta = np.abs(np.array([(s, e) for _, s, e in ours]) - np.array([(s, e) for _, s, e in reference]))
    assert delta.max() <= 0.02, delta.max()


def test_folder_without_the_graph_loads_and_says_reexport(tmp_path_factory, tiny_model, tmp_path):
    folder = linked_copy(exported(tmp_path_factory, tiny_model, None), tmp_path / "old")
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"][ALIGN_FILE]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / ALIGN_FILE).unlink()
    runner = OrtRunner(folder)
    assert Transcriber(runner, batch_size=1).transcribe(JFK).segments  # an old folder still transcribes
    with pytest.raises(WordTimestampsUnsupported, match="re-export"):
        Transcriber(runner, batch_size=1).transcribe(JFK, word_timestamps=True)
