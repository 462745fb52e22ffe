"""Language identification under pruning: dense vs pruned detection on each file's first window.

For every file of the given manifests (and plain audio files), detect the language on the dense
encoder output and on the pruned one (the model's shipped config unless --prune), and report,
for thresholds t, the policy "detect on the pruned encoding; where its top probability is below t,
detect again on the dense encoding": agreement with dense where dense is confident, how often it
changes dense's language, and how many windows pay for a dense encode. Feeds docs/results.md.

    python scripts/lid_agreement.py --model base ../shared/data/speech-val/manifest.tsv \
        ../shared/data/multilingual/audio/*.flac --json lid.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from whisper_eas.audio import load_audio
from whisper_eas.config import PruneConfig
from whisper_eas.defaults import shipped_config
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.features import window_features
from whisper_eas.runners.factory import make_runner
from whisper_eas.window_decode import _detect

THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.01)  # 1.01: always dense


def inputs(paths: list[str]) -> list[tuple[str, Path]]:
    out = []
    for p in paths:
        path = Path(p)
        if path.suffix == ".tsv":
            out += [(u.id, u.path) for u in read_manifest(path)]
        else:
            out.append((path.stem, path))
    return out


def detect(runner, mel: torch.Tensor, dense: bool) -> list[tuple[str, float, str, float]]:
    """(top code, its probability, second code, its probability) per window."""
    out = []
    for code, values in _detect(runner, runner.encode(mel, dense=dense)):
        second = sorted(values, key=values.get)[-2]
        out.append((code, values[code], second, values[second]))
    return out


def summarize(rows: list[dict], confident: float = 0.8) -> dict:
    table = {}
    for t in THRESHOLDS:
        final = [r["pruned"] if r["pruned_prob"] >= t else r["dense"] for r in rows]
        sure = [(f, r) for f, r in zip(final, rows) if r["dense_prob"] >= confident]
        table[str(t)] = {
            "agree_all": sum(f == r["dense"] for f, r in zip(final, rows)) / len(rows),
            "agree_confident": sum(f == r["dense"] for f, r in sure) / max(1, len(sure)),
            "n_confident": len(sure),
            "changed": [r["id"] for f, r in zip(final, rows) if f != r["dense"]],
            "dense_encodes": sum(r["pruned_prob"] < t for r in rows) / len(rows),
        }
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", help="manifests (.tsv) or audio files")
    ap.add_argument("--model", default="base")
    ap.add_argument("--prune", help="prune config (PruneConfig.parse grammar); default: the shipped one")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    config = PruneConfig.parse(args.prune) if args.prune else shipped_config(args.model)
    runner = make_runner(backend="pytorch", model=args.model, prune=config, device=args.device)
    files, rows = inputs(args.inputs), []
    for first in range(0, len(files), args.batch_size):
        batch = files[first : first + args.batch_size]
        mel = torch.stack([window_features(load_audio(path), runner.n_mels) for _, path in batch])
        for (uid, path), d, p in zip(batch, detect(runner, mel, True), detect(runner, mel, False)):
            rows.append({"id": uid, "path": str(path), "dense": d[0], "dense_prob": round(d[1], 4),
                         "dense_second": d[2], "dense_second_prob": round(d[3], 4),
                         "pruned": p[0], "pruned_prob": round(p[1], 4),
                         "pruned_second": p[2], "pruned_second_prob": round(p[3], 4)})
        print(f"{len(rows)}/{len(files)}", flush=True)
    out = {"model": args.model, "config": config.format() if config else None, "rows": rows,
           "policy": summarize(rows)}
    Path(args.json).write_text(json.dumps(out, indent=1))
    for t, s in out["policy"].items():
        print(f"t={t}: agree {100 * s['agree_all']:.1f}% (confident {100 * s['agree_confident']:.1f}% of "
              f"{s['n_confident']}), changed {len(s['changed'])}, dense encodes {100 * s['dense_encodes']:.0f}%")


if __name__ == "__main__":
    main()
