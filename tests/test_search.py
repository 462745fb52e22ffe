"""Joint search: Pareto selection, shared-prefix parity, resume, quality guard on a real failure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from whisper_eas.config import PruneConfig
from whisper_eas.search.pareto import choose, holds, pareto_front
from whisper_eas.sparsify import sparsified

from conftest import DATA


def _row(key, delta, speed, error=None, sparsity=0.5, high=None):
    return {"key": key, "wer_delta": delta, "e2e_speedup": speed, "error": error, "sparsity": sparsity,
            "ci_high": delta + 0.4 if high is None else high}


def test_pareto_front_and_choice():
    rows = [_row("a", 0.0, 1.1, sparsity=0.3), _row("b", 0.5, 1.4, sparsity=0.5), _row("c", 0.6, 1.3, sparsity=0.45),
            _row("d", 2.0, 1.8, sparsity=0.7), _row("e", -0.1, 1.0, sparsity=0.2),
            _row("f", 0.1, 2.5, error="boom", sparsity=0.9), _row("g", 0.3, 1.2, sparsity=0.6, high=1.3)]
    assert [r["key"] for r in pareto_front(rows)] == ["d", "b", "g", "a", "e"]  # c is dominated by b; f failed
    # the sparsest point within the budget whose interval's upper end is within twice the budget:
    # g is sparser than b but its upper end (1.3) is past 2 x 0.5
    assert choose(rows, 0.5)["key"] == "b"
    assert choose(rows, 0.7)["key"] == "g"
    assert choose(rows, 3.0)["key"] == "d"
    assert choose(rows, -1.0) is None
    assert choose([_row("x", 0.0, 1.2) | {"ci_high": None}], 1.0) is None  # no interval, no choice
    assert holds({"delta": 0.4, "high": 0.9}, 0.5) and not holds({"delta": 0.4, "high": 1.1}, 0.5)


def test_shared_prefix_matches_the_hook_path(tiny_model, dev_mels):
    from whisper_eas.search.shared_prefix import DenseStates

    mel, _ = dev_mels
    states = DenseStates(tiny_model, mel)
    for config in (PruneConfig(layer=2, keep_ratio=0.4), PruneConfig(layer=1, keep_ratio=0.3, strategy="coverage", merge=True)):
        with torch.inference_mode(), sparsified(tiny_model, config) as record:
            reference = tiny_model.model.encoder(mel).last_hidden_state
        shared = states.encode(config)
        assert np.array_equal(shared.kept, record.kept)
        torch.testing.assert_close(shared.hidden, reference, atol=1e-5, rtol=1e-5)
    with torch.inference_mode():
        dense = tiny_model.model.encoder(mel).last_hidden_state
    torch.testing.assert_close(states.encode(None).hidden, dense, atol=1e-5, rtol=1e-5)


def test_configs_decoded_together_match_each_decoded_alone(tiny_runner, dev_mels):
    """The grid decodes several configs (fixed and adaptive kept counts) as one padded batch with a
    cross-attention mask: each row must decode as its config alone would (the reference runner)."""
    from whisper_eas.decoding import DecodingOptions
    from whisper_eas.evaluation.manifest import read_manifest
    from whisper_eas.guard import GuardOptions
    from whisper_eas.runners.torch_runner import TorchRunner
    from whisper_eas.search.grid import GridPoint, evaluate_grid
    from whisper_eas.window_decode import decode_windows, window_requests

    configs = [PruneConfig(layer=1, keep_ratio=0.5, strategy="coverage", merge=True, query_stride=4),
               PruneConfig(layer=2, keep_ratio=0.3),
               PruneConfig(layer=1, keep_ratio=None, mass=0.9, strategy="coverage", min_keep=0.3, max_keep=0.8),
               PruneConfig(layer=3, keep_ratio=0.7, strategy="uniform")]
    utterances = read_manifest(DATA / "manifest.tsv")[:4]
    points = {str(i): GridPoint(c) for i, c in enumerate(configs)}
    evaluate_grid(tiny_runner, utterances, points, DecodingOptions(language="en"), GuardOptions(), batch_size=4)
    mel, _ = dev_mels
    for i, config in enumerate(configs):
        options = DecodingOptions(language="en")
        alone = decode_windows(TorchRunner("tiny.en", prune=config, hf_model=tiny_runner.model),
                               window_requests(mel, options), options, guard=GuardOptions())
        assert [points[str(i)].hyps[u.id] for u in utterances] == [w.result.text for w in alone], config.format()
        assert [points[str(i)].kept[u.id] for u in utterances] == [w.kept_frames for w in alone]


def test_padded_batch_masks_the_padding(tiny_runner, dev_mels):
    from whisper_eas.runners.base import EncodedBatch

    mel, _ = dev_mels
    tiny_runner.prune = PruneConfig(layer=1, keep_ratio=0.4)
    try:
        short = tiny_runner.encode(mel[:2])
    finally:
        tiny_runner.prune = None
    both = EncodedBatch.padded([short, tiny_runner.encode(mel[2:])])
    assert both.hidden.shape[:2] == (4, 1500) and both.frame_mask[:2].sum(1).tolist() == [600, 600]
    assert bool(both.frame_mask[2:].all()) and (both.kept[:2, 600:] == -1).all()
    assert bool((both.hidden[:2, 600:] == 0).all())


def test_guard_reruns_a_real_degenerate_window_dense(tiny_runner, dev_mels):
    from whisper_eas.decoding import DecodingOptions
    from whisper_eas.guard import GuardOptions
    from whisper_eas.runners.torch_runner import TorchRunner
    from whisper_eas.window_decode import decode_windows, window_requests

    mel, _ = dev_mels
    broken = TorchRunner("tiny.en", prune=PruneConfig(layer=1, keep_ratio=0.02, strategy="truncate"), hf_model=tiny_runner.model)
    options = DecodingOptions(language="en", sample_len=64)  # loops are caught long before 64 tokens
    requests = window_requests(mel, options)
    unguarded = decode_windows(broken, requests, options, guard=GuardOptions(enabled=False))
    guarded = decode_windows(broken, requests, options, guard=GuardOptions())
    dense = decode_windows(tiny_runner, requests, options)
    fell_back = [i for i, w in enumerate(guarded) if w.fallback]
    assert fell_back, [w.result.text for w in unguarded]
    for i in fell_back:
        assert guarded[i].result.text == dense[i].result.text
        assert guarded[i].kept_frames == 1500 and unguarded[i].kept_frames == 30


def test_search_writes_reports_and_resumes(tmp_path, monkeypatch):
    from whisper_eas.search import grid
    from whisper_eas.search.run import SearchMismatchError, SearchSpec, run_search

    spec = SearchSpec(model="tiny.en", manifest=str(DATA / "manifest.tsv"), layers=(1,), keep_ratios=(0.5,),
                      strategies=("attentive", "uniform"), masses=(0.9,), limit=3, latency_windows=1, latency_repeats=1)

    class Stop(Exception):
        pass

    def stop_after_first_latency_group(line):
        if line.startswith("latency: 2/"):
            raise Stop

    from whisper_eas.search import run as search_run

    monkeypatch.setattr(search_run, "LATENCY_GROUP", 2)  # 3 points: a group of 2 timed, then stopped
    with pytest.raises(Stop):
        run_search(spec, tmp_path, progress=stop_after_first_latency_group)
    state = json.loads((tmp_path / "state.json").read_text())
    assert len(state["latency"]) == 2 and len(state["points"]["dense"]["hyps"]) == 3
    first = list(state["latency"].values())
    assert first[0]["dense_e2e_ms"] == first[1]["dense_e2e_ms"]  # one dense run served the group

    batches = []
    original = grid._grid_batch
    monkeypatch.setattr(grid, "_grid_batch", lambda *a, **k: batches.append(1) or original(*a, **k))
    results = run_search(spec, tmp_path, progress=lambda line: None)
    assert batches == []  # every WER result came from the saved state
    assert {"model", "dense", "points", "pareto", "chosen"} <= set(results)
    points = {(p["strategy"], p["keep_ratio"], p["mass"]) for p in results["points"]}
    assert points == {("attentive", 0.5, None), ("uniform", 0.5, None), ("attentive", None, 0.9)}
    for p in results["points"]:
        assert p["e2e_speedup"] > 0 and 0 <= p["sparsity"] < 1
    adaptive = next(p for p in results["points"] if p["mass"] is not None)
    assert adaptive["sparsity"] > 0.5  # short utterances padded to 30 s: most attention mass sits on few frames
    for name in ("results.json", "results.csv", "pareto.png"):
        assert (tmp_path / name).stat().st_size > 0
    other = SearchSpec(model="base", manifest=spec.manifest, limit=3)
    with pytest.raises(SearchMismatchError, match="use another --out"):
        run_search(other, tmp_path, progress=lambda line: None)
