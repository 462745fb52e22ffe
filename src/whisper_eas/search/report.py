"""Search outputs: results.json, results.csv and pareto.png, each written atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from whisper_eas.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text

CSV_COLUMNS = ("strategy", "layer", "keep_ratio", "mass", "scoring", "query_stride", "sparsity", "wer", "wer_delta",
               "fallbacks", "encoder_speedup", "e2e_speedup", "latency_ms", "error")
MARKERS = {"attentive": "o", "uniform": "s", "truncate": "x", "coverage": "^", "coverage+merge": "v",
           "attentive+merge": "D", "uniform+merge": "P", "truncate+merge": "*"}


def write_reports(results: dict, out: Path) -> None:
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.csv", _csv(results["points"]))
    try:
        atomic_write_bytes(out / "pareto.png", _plot(results))
    except ImportError:  # matplotlib is optional ([search] extra)
        pass


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in CSV_COLUMNS})
    return buf.getvalue()


def _plot(results: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["points"] if r.get("e2e_speedup") is not None and r.get("error") is None]
    layers = sorted({r["layer"] for r in rows})
    colors = {layer: plt.cm.viridis(i / max(1, len(layers) - 1)) for i, layer in enumerate(layers)}
    fig, ax = plt.subplots(figsize=(8, 5.5))
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["layer"], r["strategy"], r["mass"] is not None), []).append(r)
    for (layer, strategy, adaptive), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        group.sort(key=lambda r: -(r["keep_ratio"] if r["keep_ratio"] is not None else r["mass"]))  # along the ratios
        label = f"L{layer} {strategy}" + (" adaptive" if adaptive else "")
        ax.plot([r["e2e_speedup"] for r in group], [r["wer_delta"] for r in group], marker=MARKERS.get(strategy, "o"),
                linestyle=":" if adaptive else "-", color=colors[layer], label=label, alpha=0.85)
    ax.axhline(results["max_wer_increase"], color="red", linestyle="--", linewidth=1, label="WER budget")
    ax.axhline(0, color="gray", linewidth=0.5)
    chosen = results.get("chosen")
    if chosen and chosen.get("e2e_speedup"):
        ax.scatter([chosen["e2e_speedup"]], [chosen["wer_delta"]], s=250, marker="*", color="gold", edgecolor="black",
                   zorder=5, label="chosen")
    ax.set_xlabel("end-to-end speedup over dense (x)")
    ax.set_ylabel("WER delta (absolute points)")
    ax.set_title(f"{results['model']}: {results['n_utterances']} utterances, dense WER {results['dense']['wer']:.2f}%")
    top = max([r["wer_delta"] for r in rows] + [results["max_wer_increase"] * 3])
    ax.set_ylim(min(-1.0, min([r["wer_delta"] for r in rows] + [0])), min(top, max(5.0, results["max_wer_increase"] * 5)))
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
