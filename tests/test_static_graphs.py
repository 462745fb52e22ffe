"""The GPU fast path's static-shape modules compute what the reference runner computes.

CUDA graphs need a GPU; on a CPU the same static modules run eagerly, which checks their math
(in-place cache at a position, masked attention, cache buckets, fixed keep counts).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from whisper_eas.config import PruneConfig
from whisper_eas.decoding import DecodingOptions
from whisper_eas.runners.cuda_runner import CACHE_BUCKETS, CudaGraphRunner, row_bucket
from whisper_eas.window_decode import decode_encoded


@pytest.fixture(scope="module")
def static_runner(tiny_runner):
    config = PruneConfig(layer=1, keep_ratio=0.4, strategy="coverage", merge=True, query_stride=4)
    return CudaGraphRunner("tiny.en", config, device="cpu", dtype=torch.float32, hf_model=tiny_runner.model)


@pytest.mark.parametrize("options", [DecodingOptions(), DecodingOptions(beam_size=3), DecodingOptions(without_timestamps=False)],
                         ids=["greedy", "beam", "timestamps"])
def test_static_path_matches_the_reference_runner(tiny_runner, static_runner, dev_mels, options):
    mel, _ = dev_mels
    tiny_runner.prune = static_runner.prune
    try:
        reference = tiny_runner.encode(mel)
        static = static_runner.encode(mel)
        torch.testing.assert_close(static.hidden, reference.hidden, atol=1e-5, rtol=1e-5)
        assert np.array_equal(static.kept, reference.kept)
        ours = decode_encoded(static_runner, static, options, ["en"] * 4)
        theirs = decode_encoded(tiny_runner, reference, options, ["en"] * 4)
    finally:
        tiny_runner.prune = None
    assert [r.tokens for r in ours] == [r.tokens for r in theirs]


def test_cache_grows_through_buckets_without_changing_logits(tiny_runner, static_runner, dev_mels):
    """3 windows, so the session runs padded to 4 rows while its cache grows."""
    mel, _ = dev_mels
    encoded = static_runner.encode(mel[:3], dense=True)
    static = static_runner.decoder(encoded)
    reference = tiny_runner.decoder(encoded)
    tokens = np.array([[50257] + [50362] + list(range(400, 400 + CACHE_BUCKETS[0] + 6))] * 3)
    with torch.inference_mode():
        a = static.step(tokens)
        b = reference.step(tokens)
    assert static.graph.positions == CACHE_BUCKETS[1]  # crossed the first bucket
    first = static_runner.step_graph(row_bucket(3), encoded.n_kept, CACHE_BUCKETS[0])
    assert static.graph.cross_k is first.cross_k and static.graph.cross_v is first.cross_v  # one cross cache
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_adaptive_configs_are_refused():
    with pytest.raises(ValueError, match="fixed keep ratio"):
        CudaGraphRunner("tiny.en", PruneConfig(layer=1, keep_ratio=None, mass=0.9), device="cpu", dtype=torch.float32)



def test_float16_keeps_nearly_the_float32_frames_and_transcripts(static_runner, dev_mels):
    """The FP16 path (CUDA graphs' dtype) run eagerly on the CPU, the whole encoder in FP16: no NaN
    windows, the same frames kept but for a few near-ties, the same greedy transcripts."""
    mel, _ = dev_mels
    half = CudaGraphRunner("tiny.en", static_runner.prune, device="cpu", dtype=torch.float16, use_graphs=False)
    assert half.head is None  # the default: the whole encoder in FP16
    encoded, reference = half.encode(mel), static_runner.encode(mel)
    assert encoded.hidden.dtype == torch.float16
    assert bool(torch.isfinite(encoded.hidden).all())
    for ours, theirs in zip(encoded.kept.tolist(), reference.kept.tolist()):
        moved = len(set(ours) - set(theirs))
        assert moved <= 0.03 * len(theirs), f"{moved} of {len(theirs)} kept frames differ in FP16"
    options = DecodingOptions(language="en")
    texts = [r.text for r in decode_encoded(half, encoded, options)]
    assert texts == [r.text for r in decode_encoded(static_runner, reference, options)]


@pytest.mark.parametrize("precision", ["float32", "tf32"])
def test_float32_head_keeps_exactly_the_float32_frames(static_runner, dev_mels, precision):
    """Stem and blocks up to the pruning layer from float32 copies beside an FP16 model (a CPU has
    no TF32: there the tf32 head is float32, and the switch must leave the global flags as found)."""
    mel, _ = dev_mels
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    half = CudaGraphRunner("tiny.en", static_runner.prune, device="cpu", dtype=torch.float16, use_graphs=False,
                           head_precision=precision)
    assert half.head is not None and len(half.head.layers) == static_runner.prune.layer
    assert next(half.model.parameters()).dtype == torch.float16  # the model itself stays FP16
    encoded, reference = half.encode(mel), static_runner.encode(mel)
    assert encoded.hidden.dtype == torch.float16
    assert np.array_equal(encoded.kept, reference.kept)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags
    torch.testing.assert_close(encoded.hidden.float(), reference.hidden, atol=0.1, rtol=0.05)
    assert half.encode(mel[:1], dense=True).hidden.dtype == torch.float16  # dense re-runs: all FP16


@pytest.mark.requires_cuda
def test_cuda_graphs_match_eager_on_a_gpu(dev_mels):
    mel, _ = dev_mels
    config = PruneConfig(layer=1, keep_ratio=0.4, strategy="coverage", merge=True, query_stride=4)
    graphs = CudaGraphRunner("tiny.en", config, device="cuda", dtype=torch.float16)
    eager = CudaGraphRunner("tiny.en", config, device="cuda", dtype=torch.float16, hf_model=graphs.model, use_graphs=False)
    for _ in range(2):  # a second replay must see the new inputs
        a, b = graphs.encode(mel), eager.encode(mel)
        torch.testing.assert_close(a.hidden, b.hidden, atol=2e-2, rtol=2e-2)
        ours = decode_encoded(graphs, a, DecodingOptions(), ["en"] * 4)
        theirs = decode_encoded(eager, b, DecodingOptions(), ["en"] * 4)
        assert [r.text for r in ours] == [r.text for r in theirs]
        mel = mel.flip(0)


def test_row_buckets_bound_the_shapes_captured():
    assert [row_bucket(n) for n in (1, 2, 3, 5, 8, 9, 14, 16, 17, 40)] == [1, 2, 4, 8, 8, 16, 16, 16, 24, 40]


@pytest.mark.parametrize("options", [DecodingOptions(), DecodingOptions(beam_size=3)], ids=["greedy", "beam"])
def test_a_batch_padded_to_its_row_bucket_decodes_like_the_reference(tiny_runner, static_runner, dev_mels, options):
    """3 windows run as 4 encoder rows (and 9 beam rows as 16 decoder rows); padding never leaks."""
    mel = dev_mels[0][:3]
    tiny_runner.prune = static_runner.prune
    try:
        reference = tiny_runner.encode(mel)
        static = static_runner.encode(mel)
        theirs = decode_encoded(tiny_runner, reference, options, ["en"] * 3)
    finally:
        tiny_runner.prune = None
    assert static.batch == 3 and np.array_equal(static.kept, reference.kept)
    assert (4, False) in static_runner._encoders and (3, False) not in static_runner._encoders
    ours = decode_encoded(static_runner, static, options, ["en"] * 3)
    assert [r.tokens for r in ours] == [r.tokens for r in theirs]


def test_head_precision_is_checked_and_only_copies_what_it_needs(tiny_model):
    from whisper_eas.sparsify import find_encoder
    from whisper_eas.static_graphs import encoder_head

    config = PruneConfig(layer=2, keep_ratio=0.5, strategy="coverage", query_stride=4)
    encoder = find_encoder(tiny_model)
    head = encoder_head(encoder, config, "tf32", torch.float16)
    assert head.tf32 and head.dtype == torch.float32 and len(head.layers) == 2
    assert encoder_head(encoder, config, "model", torch.float16) is None
    assert encoder_head(encoder, config, "float32", torch.float32) is None  # already float32
    assert encoder_head(encoder, PruneConfig(layer=2, keep_ratio=0.5, strategy="uniform"), "float32", torch.float16) is None
    with pytest.raises(ValueError, match="head precision must be one of model, tf32, float32"):
        encoder_head(encoder, config, "fp32", torch.float16)


def test_pytorch_backend_takes_the_graph_runner_on_cuda_for_fixed_keep_counts():
    from whisper_eas.runners.factory import pytorch_runner_class
    from whisper_eas.runners.torch_runner import TorchRunner

    fixed = PruneConfig(layer=1, keep_ratio=0.5, strategy="coverage", merge=True, query_stride=4)
    adaptive = PruneConfig(layer=1, keep_ratio=None, mass=0.9)
    assert pytorch_runner_class("cuda", fixed) is CudaGraphRunner
    assert pytorch_runner_class("cuda:1", None) is CudaGraphRunner
    assert pytorch_runner_class("cuda", adaptive) is TorchRunner  # kept counts vary: no static shapes
    assert pytorch_runner_class("cpu", fixed) is TorchRunner


@pytest.mark.requires_cuda
def test_transcriber_on_cuda_runs_the_graph_runner_and_agrees_with_the_cpu():
    """The user's path (`trt-transcribe --device cuda`): FP16 CUDA graphs, a coverage + merge config, long audio."""
    import difflib
    import re

    from conftest import AUDIO
    from prune_configs import COVERAGE
    from whisper_eas.transcribe import Transcriber

    prune = COVERAGE
    gpu = Transcriber.from_model("tiny.en", prune, backend="pytorch", device="cuda")
    assert isinstance(gpu.runner, CudaGraphRunner)
    cpu = Transcriber.from_model("tiny.en", prune, backend="pytorch", device="cpu")
    for name in ("jfk-inaugural-1961.flac", "long-cathy-a0001-a0019.flac"):
        ours, theirs = (re.findall(r"[a-z']+", t.transcribe(AUDIO / name).text.lower()) for t in (gpu, cpu))
        assert len(theirs) > 10 and difflib.SequenceMatcher(None, ours, theirs).ratio() > 0.95, (ours, theirs)
