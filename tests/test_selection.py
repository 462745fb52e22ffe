"""Frame selection strategies: counts, order, coverage, adaptive bounds, merging."""

from __future__ import annotations

import torch

from whisper_eas.config import PruneConfig
from whisper_eas.selection import adaptive_keep_counts, merge_frames, select_indices


def _peaky_scores(b=2, t=1500):
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(b, t, generator=g) * 0.1
    scores[:, 100:300] += 5.0  # attention piles onto one stretch
    return scores


def test_every_strategy_keeps_k_unique_frames_in_order():
    scores = _peaky_scores()
    for strategy in ("attentive", "uniform", "truncate", "coverage"):
        idx = select_indices(scores, PruneConfig(layer=1, keep_ratio=0.3, strategy=strategy), 2, 1500, "cpu")
        assert idx.shape == (2, 450), strategy
        assert bool((idx[:, 1:] > idx[:, :-1]).all()), strategy


def _largest_hole(idx, t=1500):
    return int(torch.diff(torch.cat([torch.tensor([-1]), idx, torch.tensor([t])])).max())


def test_coverage_keeps_frames_everywhere_while_attentive_leaves_holes():
    scores = _peaky_scores()
    attentive = select_indices(scores, PruneConfig(layer=1, keep_ratio=0.1), 2, 1500, "cpu")
    coverage = select_indices(scores, PruneConfig(layer=1, keep_ratio=0.1, strategy="coverage"), 2, 1500, "cpu")
    assert _largest_hole(attentive[0]) > 1000  # everything kept sits in the attended stretch
    assert _largest_hole(coverage[0]) <= 25  # coverage: a frame at least every 25
    inside = int(((coverage[0] >= 100) & (coverage[0] < 300)).sum())
    assert inside > 3 * 150 * 200 / 1500  # the attended stretch is sampled far more densely


def test_adaptive_counts_follow_attention_mass_within_bounds():
    ramp = torch.linspace(0, 1, 1500).unsqueeze(0)  # attention rising steadily over the window
    peaky = _peaky_scores(1)  # 200 frames well above a flat background
    config = PruneConfig(layer=1, keep_ratio=None, mass=0.9, min_keep=0.05, max_keep=0.8)
    ramp_count, peaky_count = int(adaptive_keep_counts(ramp, config)), int(adaptive_keep_counts(peaky, config))
    assert 500 < ramp_count < 750  # above-median mass of a ramp: most of the upper half
    assert 150 <= peaky_count <= 200  # the background holds no mass above the median
    tight = PruneConfig(layer=1, keep_ratio=None, mass=0.01, min_keep=0.1)
    assert int(adaptive_keep_counts(peaky, tight)) == 150  # min_keep floor
    capped = PruneConfig(layer=1, keep_ratio=None, mass=0.99, max_keep=0.2)
    assert int(adaptive_keep_counts(ramp, capped)) == 300  # max_keep cap


def test_merge_assigns_every_frame_to_exactly_one_kept_frame():
    t = 300
    hidden = torch.eye(t, dtype=torch.float64).unsqueeze(0)  # frame i = one-hot i
    idx = select_indices(_peaky_scores(1, t), PruneConfig(layer=1, keep_ratio=0.2, strategy="coverage"), 1, t, "cpu")
    merged = merge_frames(hidden, idx)[0]  # [K, T]: row j = weights of the frames merged into kept frame j
    assert merged.shape == (60, t)
    assert bool(((merged > 0).sum(dim=0) == 1).all())  # each frame lands in one cell
    torch.testing.assert_close(merged.sum(dim=1), torch.ones(60, dtype=torch.float64))  # cells are means
    assert bool((merged[torch.arange(60), idx[0]] > 0).all())  # a kept frame stays in its own cell


def test_merge_in_float16_equals_float32_between_adjacent_frames_past_1024():
    # in FP16, 1201 + 1202 and 1202 + 1203 both round to 2404: boundaries coincided, cells emptied (0/0 = NaN)
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(1, 1500, 16, generator=g).half()
    idx = torch.tensor([[0, 700, 1200, 1201, 1202, 1203, 1350, 1499]])
    merged = merge_frames(hidden, idx)
    assert merged.dtype == torch.float16
    assert bool(torch.isfinite(merged).all())
    assert torch.equal(merged, merge_frames(hidden.float(), idx).half())


def test_scores_are_float32_for_float16_projections():
    from whisper_eas.selection import attention_scores

    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(1, 1500, 64, generator=g), torch.randn(1, 1500, 64, generator=g)
    scores = attention_scores(q.half(), k.half(), n_heads=4, query_stride=4)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, attention_scores(q.half().float(), k.half().float(), 4, query_stride=4))
