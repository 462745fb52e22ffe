"""The decoding loop's host work in NumPy (`LogitRules`, greedy and sampled `update`) decides as
openai/whisper's PyTorch formulation does: the timestamp rule compares log-softmax mass, argmax
picks, log-probabilities add up. The references are computed here with torch in float64."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from whisper_eas.decoding import DecodingOptions, GreedyDecoder, LogitRules


@pytest.fixture(scope="module")
def tokenizer(tiny_runner):
    return tiny_runner.tokenizer


def _history(tok, rng: random.Random, prompt: list[int]) -> list[int]:
    """A transcript so far: text tokens and timestamps in any order (every branch of the grammar)."""
    sampled = []
    for _ in range(rng.randint(0, 8)):
        sampled.append(tok.timestamp_begin + rng.randint(0, 1500) if rng.random() < 0.4 else rng.randint(0, 50000))
    return prompt + sampled


def _torch_text_or_time(logits: torch.Tensor, ts_begin: int) -> torch.Tensor:
    """openai/whisper's last timestamp rule, on log-probabilities (float64)."""
    logprobs = torch.log_softmax(logits, dim=-1)
    ts_logprob = logprobs[:, ts_begin:].logsumexp(dim=-1)
    text_max = logprobs[:, :ts_begin].max(dim=-1).values
    return ts_logprob > text_max


def test_host_rules_and_greedy_match_a_torch_reference(tokenizer):
    tok, rng, gen = tokenizer, random.Random(0), torch.Generator().manual_seed(0)
    prompt = [tok.sot_prev, 400, 401, tok.sot]
    rules = LogitRules(tok, DecodingOptions(without_timestamps=False), len(prompt))
    greedy = GreedyDecoder(0.0, tok.eot)
    masked_text = 0
    for case in range(200):
        history = np.array([_history(tok, rng, prompt)] * 2, np.int64)
        logits = torch.randn(2, tok.timestamp_begin + 1501, generator=gen) * rng.choice([1.0, 4.0, 10.0])
        logits[:, tok.timestamp_begin:] += rng.choice([-4.0, 0.0, 4.0])  # timestamps sometimes win
        host = logits.numpy().copy()
        rules(host, history)
        # the reference: every rule but the last as the host applies them, then the last one in torch
        before_last = logits.numpy().copy()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(LogitRules, "_text_or_time", staticmethod(lambda *_: None))
            rules(before_last, history)
        reference = torch.from_numpy(before_last).double()
        reference[_torch_text_or_time(reference, tok.timestamp_begin), : tok.timestamp_begin] = -torch.inf
        assert np.array_equal(np.isinf(host), reference.isinf().numpy()), case
        masked_text += int(np.isinf(host[:, : tok.timestamp_begin]).all())
        sums = np.zeros(2, np.float32)
        tokens, done, _ = greedy.update(history, host, sums)
        best = reference.argmax(dim=-1)
        assert tokens[:, -1].tolist() == best.tolist() and done == bool((best == tok.eot).all()), case
        expected = torch.log_softmax(reference, dim=-1)[torch.arange(2), best].numpy()
        np.testing.assert_allclose(sums, expected, rtol=0, atol=1e-5)
    assert masked_text > 0  # the last rule (timestamps beat text) fired in some cases


def test_sampling_is_seeded_and_follows_the_distribution():
    """Temperature sampling on NumPy's Generator: the same seed draws the same tokens; masked
    tokens are never drawn; the draws follow softmax(logits / T)."""
    logits = np.log(np.array([[0.5, 0.3, 0.2, 0.0, 0.0]] * 4000, np.float32) + 1e-30)
    logits[:, 3:] = -np.inf
    history = np.zeros((4000, 1), np.int64)
    draws = [GreedyDecoder(1.0, eot=4, generators=[np.random.default_rng(5)], group=4000).update(history, logits.copy(),
                                                                                  np.zeros(4000, np.float32))[0][:, -1]
             for _ in range(2)]
    assert np.array_equal(draws[0], draws[1])
    counts = np.bincount(draws[0], minlength=5) / 4000
    assert counts[3:].sum() == 0
    np.testing.assert_allclose(counts[:3], [0.5, 0.3, 0.2], atol=0.03)
    other = GreedyDecoder(1.0, eot=4, generators=[np.random.default_rng(6)], group=4000).update(history, logits.copy(),
                                                                               np.zeros(4000, np.float32))[0][:, -1]
    assert not np.array_equal(draws[0], other)
