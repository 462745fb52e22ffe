"""Language and WER beside each other for a dense and a pruned `whisper-eas eval --json` report.

Per source (id prefix): WER dense and pruned, utterances transcribed in another language than
English (where the reference is English speech), and pruned/dense language agreement where dense
is confident. Feeds docs/results.md ("Language identification under pruning").

    python scripts/lid_report.py dense.json shipped.json [--confident 0.8]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict


def prefix(uid: str) -> str:
    """Source of an utterance id: `so762-...` -> so762, `vctk-p225_003` -> vctk, `long-...` -> long."""
    head = re.split(r"[-_]", uid)[0]
    return {"ls": "librispeech", "libritts": "librispeech", "ljspeech": "ljspeech"}.get(head, head)


def table(dense: dict, pruned: dict, confident: float) -> list[dict]:
    by = defaultdict(lambda: {"pairs": []})
    d_rows = {u["id"]: u for u in dense["utterances"] if u["error"] is None}
    for u in pruned["utterances"]:
        if u["error"] is None and u["id"] in d_rows:
            by[prefix(u["id"])]["pairs"].append((d_rows[u["id"]], u))
            by["all"]["pairs"].append((d_rows[u["id"]], u))
    out = []
    for source, entry in sorted(by.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        pairs = entry["pairs"]
        words = sum(d["n_words"] for d, _ in pairs)
        sure = [(d, p) for d, p in pairs if (d["language_prob"] or 0) >= confident]
        out.append({
            "source": source, "utterances": len(pairs), "words": words,
            "wer_dense": 100 * sum(d["errors"] for d, _ in pairs) / max(1, words),
            "wer_pruned": 100 * sum(p["errors"] for _, p in pairs) / max(1, words),
            "other_language_dense": sum(d["language"] != "en" for d, _ in pairs),
            "other_language_pruned": sum(p["language"] != "en" for _, p in pairs),
            "flips": [p["id"] for d, p in pairs if p["language"] != d["language"]],
            "agree_confident": sum(d["language"] == p["language"] for d, p in sure) / max(1, len(sure)),
            "n_confident": len(sure),
        })
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dense")
    ap.add_argument("pruned")
    ap.add_argument("--confident", type=float, default=0.8)
    args = ap.parse_args()
    rows = table(json.load(open(args.dense)), json.load(open(args.pruned)), args.confident)
    print("| source | utts | words | WER dense | WER pruned | delta | not English (dense / pruned) | "
          f"language agreement (dense p >= {args.confident}) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['source']} | {r['utterances']} | {r['words']} | {r['wer_dense']:.2f}% | {r['wer_pruned']:.2f}% | "
              f"{r['wer_pruned'] - r['wer_dense']:+.2f} | {r['other_language_dense']} / {r['other_language_pruned']} | "
              f"{100 * r['agree_confident']:.1f}% of {r['n_confident']} |")
    flips = rows[-1]["flips"]
    print(f"\nlanguage differs from dense: {len(flips)} {flips}")


if __name__ == "__main__":
    main()
