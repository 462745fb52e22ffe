"""Score hypotheses written by compare_strategies.py --no-score or gpu_transcripts.py.

    python scripts/score_transcripts.py research.json [--manifest short=PATH] [--out scored.json]
    python scripts/score_transcripts.py gpu_fp16.json --manifest PATH   (gpu_transcripts.py output)
"""

from __future__ import annotations

import argparse
import json

from whisper_eas.config import PruneConfig
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.search.grid import GridPoint


def score_runs(data: dict, manifest: str) -> dict:
    """WER per config of a gpu_transcripts.py file, printed beside the dense run's."""
    from gpu_transcripts import score

    utts = [u for u in read_manifest(manifest) if u.id in next(iter(data["runs"].values()))["hyps"]]
    scored = {key: {**score(utts, run["hyps"]), "fallbacks": run["fallbacks"]} for key, run in data["runs"].items()}
    dense = scored.get("dense", {}).get("wer")
    print(f"## {data['device']} {data.get('dtype', 'float16')}: {len(utts)} utterances")
    for key, row in scored.items():
        delta = f"{row['wer'] - dense:+6.2f}" if dense is not None else ""
        print(f"{key:32s} {row['wer']:6.2f}% {delta} ({row['fallbacks']} re-runs)")
    return scored


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--manifest", action="append", default=[], help="NAME=PATH: where a regime's manifest is here")
    ap.add_argument("--out")
    args = ap.parse_args()
    data = json.load(open(args.path))
    if "runs" in data:  # gpu_transcripts.py: one manifest, hypotheses per config
        scored = score_runs(data, args.manifest[-1].split("=", 1)[-1] if args.manifest else data["manifest"])
        if args.out:
            json.dump(scored, open(args.out, "w"), indent=1)
        return
    scored = {}
    local = dict(item.split("=", 1) for item in args.manifest)
    for name, regime in data["regimes"].items():
        path = local.get(name, regime["manifest"])
        refs = {u.id: u.text for u in read_manifest(path)}
        rows = {}
        for key, state in regime["points"].items():
            config = PruneConfig.from_dict(state["config"]) if state["config"] else None
            point = GridPoint.from_state(config, state)
            rows[key] = {"guarded": point.score(refs), "unguarded": point.score(refs, guarded=False),
                         "config": state["config"]}
        scored[name] = rows
        dense = rows["dense"]["guarded"]["wer"]
        print(f"## {name}: dense WER {dense:.2f}% ({rows['dense']['guarded']['n_words']} words)")
        for key, row in sorted(rows.items(), key=lambda kv: kv[0]):
            g, u = row["guarded"], row["unguarded"]
            print(f"{key:60s} {u['wer'] - dense:+6.2f} unguarded | {g['wer'] - dense:+6.2f} guarded "
                  f"({g['fallbacks']} re-runs) sparsity {100 * u['sparsity']:.0f}%")
    if args.out:
        json.dump(scored, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
