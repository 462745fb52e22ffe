"""The decoding loop's host work: float32 CPU logits go through numpy (`LogitRules`, greedy
`update`); any other logits (CUDA, or float64 here) through torch. Both must decide alike."""

from __future__ import annotations

import random

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


def test_host_path_masks_and_picks_like_the_torch_path(tokenizer):
    tok, rng, gen = tokenizer, random.Random(0), torch.Generator().manual_seed(0)
    prompt = [tok.sot_prev, 400, 401, tok.sot]
    rules = LogitRules(tok, DecodingOptions(without_timestamps=False), len(prompt))
    greedy = GreedyDecoder(0.0, tok.eot)
    masked_text = 0
    for case in range(200):
        history = torch.tensor([_history(tok, rng, prompt)] * 2)
        logits = torch.randn(2, tok.timestamp_begin + 1501, generator=gen) * rng.choice([1.0, 4.0, 10.0])
        logits[:, tok.timestamp_begin:] += rng.choice([-4.0, 0.0, 4.0])  # timestamps sometimes win
        host, reference = logits.clone(), logits.double()  # float32 on the CPU: numpy; float64: torch
        rules(host, history)
        rules(reference, history)
        assert torch.equal(host.isinf(), reference.isinf()), case
        masked_text += int(host[:, : tok.timestamp_begin].isinf().all())
        sums = [torch.zeros(2), torch.zeros(2, dtype=torch.float64)]
        (a, done_a, _), (b, done_b, _) = (greedy.update(history, x, s) for x, s in zip((host, reference), sums))
        assert torch.equal(a, b) and done_a == done_b, case
        torch.testing.assert_close(sums[0].double(), sums[1], rtol=0, atol=1e-5)
    assert masked_text > 0  # the last rule (timestamps beat text) fired in some cases
