"""Compare frame-selection strategies at equal keep ratios (shared dense prefix per batch).

    python scripts/compare_strategies.py --model tiny.en --manifest short=M1.tsv --manifest full=M2.tsv \
        --layers 1,2 --keep-ratios 0.5,0.4,0.3 --variants attentive,uniform,coverage --json out.json

Variants: attentive, attentive-noself, attentive-maxhead, uniform, truncate, coverage[:FLOOR],
each optionally with `@STRIDE` (query stride) and `+merge`; `adaptive-<variant>` takes --masses.
`--device cuda --graphs` decodes through CUDA graphs; `--no-score` only writes hypotheses (score
them with scripts/score_transcripts.py where jiwer is installed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from whisper_eas.config import PruneConfig
from whisper_eas.decoding import DecodingOptions
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.guard import GuardOptions
from whisper_eas.search.grid import GridPoint, config_key, evaluate_grid

SCORING = {"attentive-noself": "mean_noself", "attentive-maxhead": "max_head"}


def variant_config(variant: str, layer: int, keep: float | None, mass: float | None = None,
                   min_keep: float = 0.1, max_keep: float = 0.8) -> PruneConfig:
    merge = variant.endswith("+merge")
    name = variant.removesuffix("+merge").removeprefix("adaptive-")
    stride = 1
    if "@" in name:
        name, stride_text = name.split("@")
        stride = int(stride_text)
    floor = 0.5
    if name.startswith("coverage:"):
        name, floor_text = name.split(":")
        floor = float(floor_text)
    strategy = "attentive" if name.startswith("attentive") else name
    return PruneConfig(layer=layer, keep_ratio=keep, mass=mass, strategy=strategy, scoring=SCORING.get(name, "mean"),
                       merge=merge, uniform_floor=floor, query_stride=stride, min_keep=min_keep, max_keep=max_keep)


def build_configs(args) -> list[PruneConfig]:
    configs = []
    for layer in (int(x) for x in args.layers.split(",")):
        for variant in args.variants.split(","):
            if variant.startswith("adaptive-"):
                configs += [variant_config(variant, layer, None, float(m), args.min_keep, args.max_keep)
                            for m in args.masses.split(",")]
            else:
                configs += [variant_config(variant, layer, float(k)) for k in args.keep_ratios.split(",")]
    return configs


def make_runner(args):
    dtype = {"float32": torch.float32, "float16": torch.float16}[args.dtype]
    if args.graphs:
        from whisper_eas.runners.cuda_runner import CudaGraphRunner

        return CudaGraphRunner(args.model, device=args.device, dtype=dtype)
    from whisper_eas.runners.torch_runner import TorchRunner

    return TorchRunner(args.model, device=args.device, dtype=dtype)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--manifest", action="append", required=True, help="NAME=PATH, repeatable")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--layers", default="1,2")
    ap.add_argument("--keep-ratios", default="0.5,0.4,0.3")
    ap.add_argument("--masses", default="0.9,0.95")
    ap.add_argument("--min-keep", type=float, default=0.1, help="adaptive lower bound (share of frames)")
    ap.add_argument("--max-keep", type=float, default=0.8, help="adaptive upper bound (share of frames)")
    ap.add_argument("--variants", default="attentive,uniform,coverage")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--graphs", action="store_true")
    ap.add_argument("--no-guard", action="store_true")
    ap.add_argument("--no-score", action="store_true")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    runner = make_runner(args)
    configs = build_configs(args)
    out = {"model": args.model, "device": args.device, "dtype": args.dtype, "guard": not args.no_guard,
           "torch": torch.__version__, "regimes": {}}
    for item in args.manifest:
        name, path = item.split("=", 1)
        utts = read_manifest(path, args.limit)
        points = {config_key(c): GridPoint(c) for c in configs}
        t0, failed = time.time(), {}

        def snapshot() -> dict:
            return {"manifest": path, "n_utterances": len(utts), "failed": failed, "wall_s": time.time() - t0,
                    "points": {k: {"config": p.config.to_dict() if p.config else None, **p.to_state()}
                               for k, p in points.items()}}

        def after_batch(done: int, total: int) -> None:  # partial results survive a timeout
            print(f"{name} {done}/{total} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
            out["regimes"][name] = snapshot()
            with open(args.json, "w") as f:
                json.dump(out, f)

        evaluate_grid(runner, utts, points, DecodingOptions(language="en"), GuardOptions(enabled=not args.no_guard),
                      args.batch_size, failed, after_batch)
        regime = snapshot()
        if not args.no_score:
            refs = {u.id: u.text for u in utts}
            regime["scores"] = {k: p.score(refs) for k, p in points.items()}
            dense = regime["scores"]["dense"]["wer"]
            for key, row in regime["scores"].items():
                print(f"{name} {key:56s} WER {row['wer']:6.2f} ({row['wer'] - dense:+6.2f}) "
                      f"sparsity {100 * row['sparsity']:4.0f}% fallbacks {row['fallbacks']}")
        out["regimes"][name] = regime
        with open(args.json, "w") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main()
