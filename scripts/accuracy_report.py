"""Score the grid files of `scripts/accuracy_grid.py` / `accuracy_longform.py` (issue 13): per
config the WER delta against dense with its paired bootstrap 95% interval, better / worse counts,
mean sparsity split into padding and speech, guard re-runs, utterances whose first words were lost,
and the delta on speechocean762 (`so762-*`, non-native speech with verbatim references) apart from
the rest. Then the protocol: choose on the tuning files, confirm on the confirmation files.

    python scripts/accuracy_report.py --dev tiny-dev-short.json --dev-full tiny-dev-full.json \
        --val tiny-val-short.json --val-long tiny-val-long.json --json summary.json > tables.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from whisper_eas.config import PruneConfig
from whisper_eas.evaluation.onset import first_words_lost
from whisper_eas.evaluation.stats import pair_transcripts, paired_bootstrap, source_of
from whisper_eas.search.pareto import DEFAULT_BUDGET, holds, qualifies

N_FRAMES = 1500
SO762 = "so762"


def load(path: str | None) -> dict | None:
    return json.loads(Path(path).read_text()) if path else None


def words_per_second(text: str, seconds: float) -> float:
    from whisper_eas.evaluation.wer import normalize

    return len(normalize(text).split()) / max(seconds, 0.5)


def rate_guard(grid: dict, key: str, min_rate: float) -> tuple[dict[str, str], set[str]]:
    """A word-rate guard: an utterance whose pruned transcript has fewer than `min_rate` words per
    second of audio is re-run dense. Returns the guarded hypotheses and the re-run count."""
    point, dense, hyps, reruns = grid["points"][key], grid["points"]["dense"]["hyps"], {}, set()
    for uid, text in point["hyps"].items():
        if uid in point.get("fallbacks", {}) or words_per_second(text, grid["durations"][uid]) >= min_rate:
            hyps[uid] = text
        else:
            hyps[uid] = dense[uid]
            reruns.add(uid)
    return hyps, reruns


def repeated_span(text: str, min_words: int = 4) -> bool:
    """A run of at least `min_words` words immediately repeated ("... for the kids. We also need
    ... for the kids."): the whole-sentence repetition the token-level loop check misses."""
    from whisper_eas.evaluation.wer import normalize

    words = normalize(text).split()
    for n in range(min_words, len(words) // 2 + 1):
        for i in range(0, len(words) - 2 * n + 1):
            if words[i : i + n] == words[i + n : i + 2 * n]:
                return True
    return False


def repeat_guard(grid: dict, key: str) -> tuple[dict[str, str], set[str]]:
    """Guard simulation: a pruned transcript with a repeated span of >= 4 words is re-run dense
    (where the dense transcript has none: the model's own repetition is not pruning's)."""
    point, dense, hyps, reruns = grid["points"][key], grid["points"]["dense"]["hyps"], {}, set()
    for uid, text in point["hyps"].items():
        if uid not in point.get("fallbacks", {}) and repeated_span(text):
            hyps[uid] = dense[uid]
            reruns.add(uid)
        else:
            hyps[uid] = text
    return hyps, reruns


def row(grid: dict, key: str, hyps: dict[str, str] | None = None, extra_reruns: set[str] = frozenset()) -> dict:
    """One config's scores against dense on the grid's utterances."""
    refs, dense = grid["refs"], grid["points"]["dense"]["hyps"]
    point = grid["points"][key]
    hyps = hyps or point["hyps"]
    ids = [u for u in refs if u in hyps and u in dense]
    refs = {u: refs[u] for u in ids}
    pairs = pair_transcripts(refs, dense, hyps)
    result = paired_bootstrap(pairs).to_dict()
    groups = {"so762": [p for p in pairs if source_of(p.id) == SO762], "other": [p for p in pairs if source_of(p.id) != SO762]}
    for name, group in groups.items():
        if group and sum(p.n_words for p in group):
            result[name] = paired_bootstrap(group).to_dict()
    config = grid["configs"].get(key)
    kept = {u: (N_FRAMES if u in extra_reruns else k) for u, k in point["kept"].items()}
    result["sparsity"] = sum(1 - kept[u] / N_FRAMES for u in ids) / len(ids)
    if config and config.get("padding") == "drop" and "content_frames" in grid:
        cfg = PruneConfig.from_dict(config)
        result["padding_sparsity"] = sum(
            (1 - cfg.region_frames(grid["content_frames"][u], N_FRAMES) / N_FRAMES) for u in ids
            if u not in point["fallbacks"] and u not in extra_reruns) / len(ids)
        result["speech_sparsity"] = result["sparsity"] - result["padding_sparsity"]
    result["reruns"] = sum(1 for u in ids if u in point.get("fallbacks", {})) + len(extra_reruns)
    result["onset_lost"] = sum(1 for u in ids if first_words_lost(refs[u], hyps[u]) and not first_words_lost(refs[u], dense[u]))
    result["key"] = key
    return result


def fmt_delta(d: dict) -> str:
    return f"{d['delta']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"


def table(grid: dict, rows: list[dict], title: str) -> str:
    n = len(grid["points"]["dense"]["hyps"])
    dense_wer = rows[0]["wer_a"] if rows else float("nan")
    lines = [f"### {title}: {rows[0]['n_utterances'] if rows else n} utterances, {rows[0]['n_words'] if rows else 0} words, "
             f"dense {dense_wer:.2f}%", "",
             "| config | sparsity (padding + speech) | WER | delta [95%] | better / worse | so762 delta | other delta "
             "| guard re-runs | first words lost |",
             "| --- | --- | ---: | --- | ---: | --- | --- | ---: | ---: |"]
    for r in rows:
        split = (f" ({100 * r['padding_sparsity']:.0f} + {100 * r['speech_sparsity']:.0f})"
                 if "padding_sparsity" in r else "")
        so = fmt_delta(r["so762"]) if "so762" in r else ""
        other = fmt_delta(r["other"]) if "other" in r else ""
        lines.append(f"| {r['key']} | {100 * r['sparsity']:.0f}%{split} | {r['wer_b']:.2f} | {fmt_delta(r)} | "
                     f"{r['better']} / {r['worse']} | {so} | {other} | {r['reruns']} | {r['onset_lost']} |")
    return "\n".join(lines)


def full_equivalent(key: str, config: dict | None, full: dict | None) -> str | None:
    """The full-window grid's key for a config: dropping padding changes nothing on a full window."""
    if full is None or config is None:
        return None
    cfg = PruneConfig.from_dict(dict(config, padding="keep", speech_floor=0.0))
    name = cfg.format()
    return name if name in full["points"] else None


def choose(dev_rows: list[dict], full_rows: dict[str, dict], dev: dict, full: dict | None, budget: float,
           short_target: float, full_target: float) -> dict | None:
    """The sparsest dev point (short regime) qualifying in both regimes at both sparsity targets."""
    candidates = []
    for r in dev_rows:
        point = {"wer_delta": r["delta"], "ci_high": r["high"], "sparsity": r["sparsity"], "error": None}
        if not qualifies(point, budget) or r["sparsity"] < short_target:
            continue
        equivalent = full_equivalent(r["key"], dev["configs"].get(r["key"]), full)
        if full is not None:
            f = full_rows.get(equivalent or "")
            if f is None or not qualifies({"wer_delta": f["delta"], "ci_high": f["high"], "error": None}, budget) \
                    or f["sparsity"] < full_target:
                continue
        candidates.append(r)
    return max(candidates, key=lambda r: (round(r["sparsity"], 4), -r["delta"])) if candidates else None


def scored(grid: dict, key: str, guard: bool) -> dict:
    return row(grid, key, *repeat_guard(grid, key)) if guard else row(grid, key)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", required=True, help="short-utterance grid on the tuning set")
    parser.add_argument("--dev-full", help="full 30 s window grid on the tuning set")
    parser.add_argument("--val", help="short-utterance grid on the confirmation set")
    parser.add_argument("--val-long", help="long-form file on the confirmation set")
    parser.add_argument("--dev-long", help="long-form file on the tuning set")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET)
    parser.add_argument("--short-target", type=float, default=0.60)
    parser.add_argument("--full-target", type=float, default=0.50)
    parser.add_argument("--title", default="")
    parser.add_argument("--repeat-guard", action="store_true",
                        help="simulate the repeated-span guard (>= 4 words repeated: re-run dense) on every row")
    parser.add_argument("--json")
    args = parser.parse_args()
    dev, full, val, val_long, dev_long = (load(p) for p in (args.dev, args.dev_full, args.val, args.val_long, args.dev_long))
    out: dict = {"budget": args.budget}
    keys = [k for k in dev["points"] if k != "dense" and dev["points"][k]["hyps"]]
    dev_rows = [scored(dev, k, args.repeat_guard) for k in keys]
    print(table(dev, dev_rows, f"{args.title} speech-dev, short utterances (tuning)"), "\n")
    full_rows = {}
    if full:
        full_rows = {k: scored(full, k, args.repeat_guard) for k in full["points"] if k != "dense" and full["points"][k]["hyps"]}
        print(table(full, list(full_rows.values()), f"{args.title} speech-dev, full 30 s windows (tuning)"), "\n")
    if dev_long:
        rows = [scored(dev_long, k, args.repeat_guard) for k in dev_long["points"] if k != "dense" and dev_long["points"][k]["hyps"]]
        print(table(dev_long, rows, f"{args.title} speech-dev, long-form (tuning)"), "\n")
        out["dev_long"] = rows
    chosen = choose(dev_rows, full_rows, dev, full, args.budget, args.short_target, args.full_target)
    out.update(dev=dev_rows, dev_full=list(full_rows.values()), chosen=chosen and chosen["key"])
    print(f"chosen on speech-dev (delta <= +{args.budget}, upper bound <= +{2 * args.budget}, sparsity >= "
          f"{100 * args.short_target:.0f}% short / {100 * args.full_target:.0f}% full): "
          f"{chosen['key'] if chosen else 'none'}\n")
    if val:
        val_keys = [k for k in val["points"] if k != "dense" and val["points"][k]["hyps"]]
        val_rows = [scored(val, k, args.repeat_guard) for k in val_keys]
        print(table(val, val_rows, f"{args.title} speech-val, short utterances (confirmation)"), "\n")
        out["val"] = val_rows
        if chosen:
            confirmed = next((r for r in val_rows if r["key"] == chosen["key"]), None)
            out["confirmed_short"] = confirmed is not None and holds(confirmed, args.budget)
            print(f"confirmation (short): {chosen['key']}: {fmt_delta(confirmed) if confirmed else 'not measured'}"
                  f" -> {'holds' if out['confirmed_short'] else 'does not hold'}\n")
        # the word-rate guard, its threshold tuned on dev's dense transcripts (1st percentile)
        rates = sorted(words_per_second(t, dev["durations"][u]) for u, t in dev["points"]["dense"]["hyps"].items())
        min_rate = rates[max(0, len(rates) // 100)]
        out["rate_guard"] = {"min_words_per_second": min_rate, "rows": []}
        for grid, name in ((dev, "dev"), (val, "val")):
            for k in ([chosen["key"]] if chosen else []) + [k for k in grid["points"] if "onset_keep" in k][:0]:
                if k in grid["points"]:
                    hyps, reruns = rate_guard(grid, k, min_rate)
                    r = row(grid, k, hyps, reruns)
                    r["set"] = name
                    out["rate_guard"]["rows"].append(r)
                    print(f"word-rate guard (< {min_rate:.2f} words/s re-run dense) on {name}, {k}: "
                          f"{fmt_delta(r)}, re-runs {r['reruns']}, first words lost {r['onset_lost']}")
    if val_long:
        rows = [scored(val_long, k, args.repeat_guard) for k in val_long["points"] if k != "dense" and val_long["points"][k]["hyps"]]
        print("\n" + table(val_long, rows, f"{args.title} speech-val, long-form (confirmation; 4 recordings: "
                                          "the interval is over recordings)"), "\n")
        out["val_long"] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
