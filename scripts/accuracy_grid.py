"""Per-utterance transcripts of a set of prune configs on a manifest (the issue-13 protocol's runs).

Dense once per batch, every config's tail on the shared prefix (`search/grid.py`), quality guard
on, greedy. Writes OUT (JSON, atomically after every batch: a killed run resumes) with, per
config, each utterance's hypothesis, kept-frame count, the guard's re-runs and the unguarded text,
plus each utterance's speech region, so `whisper-eas compare` / `evaluation.stats` and the onset
diagnostic read it directly.

    PYTHONPATH=src python scripts/accuracy_grid.py --model tiny.en \
        --manifest ../shared/data/speech-dev/manifest-short.tsv --set tiny-short --out dev.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from whisper_eas.config import PruneConfig
from whisper_eas.decoding import DecodingOptions
from whisper_eas.evaluation.evaluate import load_window
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.guard import GuardOptions
from whisper_eas.io_utils import atomic_write_json
from whisper_eas.runners.torch_runner import TorchRunner
from whisper_eas.search.grid import GridPoint, evaluate_grid
from whisper_eas.selection import content_frames

COVERAGE = dict(strategy="coverage", merge=True, query_stride=4)


def config_set(name: str) -> dict[str, PruneConfig]:
    """Named sets `MODEL-REGIME` (tiny / base; short, full, long, cpu): the baselines (published
    attentive, uniform stride, padding trim with and without its 10 s floor) beside ours."""
    model, regime = name.split("-", 1)
    layer = {"tiny": 1, "base": 3}[model]
    out: dict[str, PruneConfig] = {}

    def add(_label: str, keep: float, strategy: str = "coverage", **extra) -> None:
        fields = dict(COVERAGE) if strategy == "coverage" else dict(strategy=strategy)
        config = PruneConfig(layer=layer, keep_ratio=keep, **fields, **extra)
        out[config.format()] = config

    drop = dict(padding="drop", speech_floor=10.0)
    keeps = (0.5, 0.4)
    if regime in ("short", "full", "cpu"):
        for keep in keeps if regime != "cpu" else (0.4,):
            add("attentive", keep, "attentive")
            add("uniform", keep, "uniform")
        for keep in keeps:
            add("coverage+merge", keep)
    if regime in ("short", "full"):
        add("coverage+merge", 0.4, onset_keep=1.0)
        add("coverage+merge", 0.5, onset_keep=1.0)
    if regime in ("short", "cpu", "long"):
        trim = PruneConfig(layer=layer, keep_ratio=1.0, strategy="uniform", **drop)
        out[trim.format()] = trim
    if regime == "short":
        trim = PruneConfig(layer=layer, keep_ratio=1.0, strategy="uniform", padding="drop")
        out[trim.format()] = trim
    region_keeps = {"short": (0.8, 0.6, 0.5, 0.4), "cpu": (0.8, 0.6), "long": (0.5, 0.4), "full": ()}[regime]
    for keep in region_keeps:
        add("drop+coverage+merge", keep, **drop)
    if regime in ("short", "long"):
        add("drop+coverage+merge", 0.5, **drop, onset_keep=1.0)
    if regime == "short":
        add("drop+coverage+merge", 0.6, **drop, onset_keep=1.0)
        add("drop+coverage+merge", 0.5, padding="drop", speech_floor=5.0)
        add("drop+coverage+merge", 0.5, padding="drop")
    # exportable adaptive counts (the ONNX prune graph follows the attention, not the audio): the
    # attention mass above the median, floor 0.25 (docs/results.md section 6), at most half the frames
    adaptive = dict(COVERAGE, uniform_floor=0.25, min_keep=0.15, max_keep=0.5, keep_ratio=None)
    if regime in ("short", "full", "long"):
        for mass_layer, mass in ((layer, 0.93), (layer, 0.95), (layer + 1, 0.93)):
            config = PruneConfig(layer=mass_layer, mass=mass, **adaptive)
            out[config.format()] = config
    if regime == "long":
        add("coverage+merge", 0.5)
        add("uniform", 0.5, "uniform")
        add("attentive", 0.5, "attentive")
    return out


def extra_configs(texts: list[str]) -> dict[str, PruneConfig]:
    """`name=json-dict` pairs from the command line."""
    out = {}
    for text in texts:
        name, body = text.split("=", 1)
        out[name or PruneConfig.from_dict(json.loads(body)).format()] = PruneConfig.from_dict(json.loads(body))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--set", dest="config_set", help="tiny-short, tiny-full, base-short, base-full")
    parser.add_argument("--config", action="append", default=[], help="NAME={json PruneConfig dict}")
    parser.add_argument("--only", help="comma-separated config names of the set to run")
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--group-rows", type=int, default=32, help="decoder rows per pass (GPU: 128)")
    args = parser.parse_args()

    configs = config_set(args.config_set) if args.config_set else {}
    if args.only:
        configs = {k: v for k, v in configs.items() if k in args.only.split(",")}
    configs.update(extra_configs(args.config))
    out = Path(args.out)
    saved = json.loads(out.read_text()) if out.exists() else {}
    utterances = read_manifest(args.manifest, args.limit)
    runner = TorchRunner(args.model, device=args.device)
    points = {"dense": GridPoint(None)}
    points.update({k: GridPoint(c) for k, c in configs.items()})
    for key, state in saved.get("points", {}).items():
        if key in points:
            points[key] = GridPoint.from_state(points[key].config, state)
    failed: dict[str, str] = saved.get("failed", {})
    content = dict(saved.get("content_frames", {}))
    for utt in utterances:
        if utt.id not in content and utt.id not in failed:
            try:
                content[utt.id] = int(content_frames(load_window(utt, runner.n_mels).unsqueeze(0))[0])
            except Exception as error:  # noqa: BLE001 - reported in the output, the run goes on
                failed[utt.id] = str(error)
    started = time.perf_counter()

    def save(done: int = 0, total: int = 0) -> None:
        atomic_write_json(out, {
            "model": args.model, "manifest": args.manifest, "device": args.device,
            "refs": {u.id: u.text for u in utterances}, "durations": {u.id: u.duration_s for u in utterances},
            "content_frames": content, "failed": failed,
            "configs": {k: (None if p.config is None else p.config.to_dict()) for k, p in points.items()},
            "points": {k: p.to_state() for k, p in points.items()},
            "wall_s": saved.get("wall_s", 0.0) + time.perf_counter() - started,
        })
        if total:
            print(f"{done}/{total} utterances x {len(points)} points, {time.perf_counter() - started:.0f}s",
                  file=sys.stderr, flush=True)

    torch.set_num_threads(max(1, torch.get_num_threads()))
    evaluate_grid(runner, utterances, points, DecodingOptions(language="en"), GuardOptions(), args.batch_size,
                  failed, save, args.group_rows)
    save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
