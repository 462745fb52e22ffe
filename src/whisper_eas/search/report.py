"""Search outputs: results.json, results.csv and pareto.png, each written atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from whisper_eas.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text

CSV_COLUMNS = ("strategy", "layer", "keep_ratio", "mass", "scoring", "query_stride", "sparsity", "wer", "wer_delta",
               "ci_low", "ci_high", "better", "worse", "fallbacks", "encoder_speedup", "e2e_speedup", "latency_ms", "error")
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


def _interval_bars(ax, rows: list[dict], color, y_high: float) -> None:
    """The paired 95% interval of each delta, where the rows carry one."""
    rows = [r for r in rows if r.get("ci_low") is not None]
    if rows:
        ax.vlines([r["e2e_speedup"] for r in rows], [min(r["ci_low"], y_high) for r in rows],
                  [min(r["ci_high"], y_high) for r in rows], color=color, alpha=0.35, linewidth=2)


def _plot(results: dict) -> bytes:
    """One panel per strategy (so the baselines sit beside ours), one line per layer along the ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["points"] if r.get("e2e_speedup") is not None and r.get("error") is None]
    strategies = sorted({r["strategy"] for r in rows})
    layers = sorted({r["layer"] for r in rows})
    colors = {layer: plt.cm.viridis(i / max(1, len(layers) - 1)) for i, layer in enumerate(layers)}
    n_cols = min(2, max(1, len(strategies)))
    n_rows = -(-max(1, len(strategies)) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.2 * n_cols, 3.8 * n_rows), sharex=True, sharey=True,
                             squeeze=False)
    budget, chosen = results["max_wer_increase"], results.get("chosen")
    deltas = [r["wer_delta"] for r in rows] + [0.0]
    y_low, y_high = min(-1.0, min(deltas)) - 0.2, max(5.0, budget * 5)
    for ax, strategy in zip(axes.flat, strategies):
        for layer in layers:
            fixed = sorted((r for r in rows if r["strategy"] == strategy and r["layer"] == layer and r["mass"] is None),
                           key=lambda r: -r["keep_ratio"])  # along the ratios, least sparse first
            adaptive = [r for r in rows if r["strategy"] == strategy and r["layer"] == layer and r["mass"] is not None]
            if fixed:
                ax.plot([r["e2e_speedup"] for r in fixed], [min(r["wer_delta"], y_high) for r in fixed],
                        marker=MARKERS.get(strategy, "o"), color=colors[layer], label=f"layer {layer}", alpha=0.85)
                _interval_bars(ax, fixed, colors[layer], y_high)
            if adaptive:
                ax.scatter([r["e2e_speedup"] for r in adaptive], [min(r["wer_delta"], y_high) for r in adaptive],
                           marker="D", facecolor="none", edgecolor=colors[layer], s=45,
                           label=f"layer {layer} adaptive")
        ax.axhline(budget, color="red", linestyle="--", linewidth=1, label="WER budget")
        ax.axhline(0, color="gray", linewidth=0.5)
        if chosen and chosen.get("e2e_speedup") and chosen["strategy"] == strategy:
            ax.scatter([chosen["e2e_speedup"]], [chosen["wer_delta"]], s=250, marker="*", color="gold",
                       edgecolor="black", zorder=5, label="chosen")
        ax.set_title(strategy, fontsize=10)
        ax.set_ylim(y_low, y_high)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    for ax in axes.flat[len(strategies):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("end-to-end speedup over dense (x)")
    for ax in axes[:, 0]:
        ax.set_ylabel("WER delta (points)")
    fig.suptitle(f"{results['model']}: {results['n_utterances']} utterances, dense WER {results['dense']['wer']:.2f}% "
                 f"(deltas above {y_high:g} drawn at the top)", fontsize=10)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
