"""Early attentive sparsification on the real tiny.en encoder."""

from __future__ import annotations

import pytest
import torch

from whisper_eas.config import PruneConfig
from whisper_eas.sparsify import EncoderPruner, sparsified


def _encode(model, mel):
    with torch.inference_mode():
        return model.model.encoder(mel).last_hidden_state


def test_keep_ratio_one_is_bit_exact(tiny_model, dev_mels):
    mel, _ = dev_mels
    dense = _encode(tiny_model, mel)
    for layer in range(1, 5):
        with sparsified(tiny_model, PruneConfig(layer=layer, keep_ratio=1.0)) as record:
            pruned = _encode(tiny_model, mel)
        assert torch.equal(dense, pruned)
        assert record.kept.shape == (4, 1500)


def test_patch_is_reversible(tiny_model, dev_mels):
    mel, _ = dev_mels
    before = _encode(tiny_model, mel)
    with sparsified(tiny_model, PruneConfig(layer=1, keep_ratio=0.5)):
        assert _encode(tiny_model, mel).shape[1] == 750
    assert torch.equal(_encode(tiny_model, mel), before)
    assert not any(m._forward_hooks for m in tiny_model.modules())


def test_patch_is_removed_after_an_error(tiny_model, dev_mels):
    mel, _ = dev_mels
    with pytest.raises(RuntimeError, match="boom"):
        with sparsified(tiny_model, PruneConfig(layer=2, keep_ratio=0.5)):
            raise RuntimeError("boom")
    assert not any(m._forward_hooks for m in tiny_model.modules())


def test_kept_frames_are_in_time_order_and_per_sample(tiny_model, dev_mels):
    mel, _ = dev_mels
    config = PruneConfig(layer=1, keep_ratio=0.4)
    with sparsified(tiny_model, config) as record:
        batched = _encode(tiny_model, mel)
    kept = record.kept
    assert kept.shape == (4, 600)
    assert bool((kept[:, 1:] > kept[:, :-1]).all())
    assert not torch.equal(kept[0], kept[1])  # each sample chooses its own frames
    with sparsified(tiny_model, config) as record_one:
        single = _encode(tiny_model, mel[1:2])
    assert torch.equal(record_one.kept[0], kept[1])
    torch.testing.assert_close(single[0], batched[1], atol=1e-4, rtol=1e-4)


def test_only_the_scoring_layer_materializes_attention(tiny_model, dev_mels):
    mel, _ = dev_mels
    calls = []

    class CountSoftmax(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.softmax, torch.nn.functional.softmax, torch.Tensor.softmax):
                calls.append(args[0].shape)
            return func(*args, **(kwargs or {}))

    with sparsified(tiny_model, PruneConfig(layer=2, keep_ratio=0.5, query_stride=4)), CountSoftmax():
        _encode(tiny_model, mel[:1])
    assert len(calls) == 1  # every encoder layer still uses SDPA; only the scores need probabilities
    assert calls[0] == (1, 6, 375, 1500)  # strided queries x all keys


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(layer=0, keep_ratio=0.5), "layer must be"),
        (dict(layer=1, keep_ratio=0.0), "keep_ratio must be in"),
        (dict(layer=1, keep_ratio=1.5), "keep_ratio must be in"),
        (dict(layer=1, keep_ratio=None), "exactly one of"),
        (dict(layer=1, keep_ratio=0.5, strategy="magic"), "strategy must be"),
    ],
)
def test_invalid_configs_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PruneConfig(**kwargs)


def test_layer_beyond_the_encoder_is_rejected(tiny_model):
    with pytest.raises(ValueError, match=r"outside this encoder's 1..4"):
        EncoderPruner(tiny_model, PruneConfig(layer=5, keep_ratio=0.5))


def test_generate_greedy_and_beam_with_sparsification(tiny_model, dev_mels):
    from whisper_eas.checkpoints.registry import resolve_model
    from whisper_eas.evaluation.wer import word_errors
    from whisper_eas.tokenizer import WhisperTokenizer

    mel, refs = dev_mels
    tok = WhisperTokenizer.from_file(resolve_model("tiny.en") / "tokenizer.json", multilingual=False)
    with torch.inference_mode():
        dense = tiny_model.generate(mel[:2])
        with sparsified(tiny_model, PruneConfig(layer=1, keep_ratio=0.5)) as record:
            greedy = tiny_model.generate(mel[:2])
            beam = tiny_model.generate(mel[:2], num_beams=3)
    assert record.kept.shape[-1] == 750
    for tokens in (greedy, beam):
        for row, dense_row, ref in zip(tokens, dense, refs[:2]):
            sparse_errors, words = word_errors(ref, tok.decode(row.tolist()))
            dense_errors, _ = word_errors(ref, tok.decode(dense_row.tolist()))
            assert words > 3 and sparse_errors <= dense_errors + 1, tok.decode(row.tolist())


def test_own_decoder_matches_hf_generate(tiny_runner, dev_mels):
    from whisper_eas.decoding import DecodingOptions
    from whisper_eas.window_decode import decode_encoded

    mel, _ = dev_mels
    config = PruneConfig(layer=2, keep_ratio=0.5)
    tiny_runner.prune = config
    try:
        ours = decode_encoded(tiny_runner, tiny_runner.encode(mel), DecodingOptions(), ["en"] * 4)
        with torch.inference_mode(), sparsified(tiny_runner.model, config):
            theirs = tiny_runner.model.generate(mel)
    finally:
        tiny_runner.prune = None
    eot = tiny_runner.tokenizer.eot
    assert [r.tokens for r in ours] == [[t for t in row.tolist() if t < eot] for row in theirs]
