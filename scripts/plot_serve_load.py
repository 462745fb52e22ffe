"""Latency and throughput against offered load, from an open-loop `bench_serve.py --rates` report.

One line per server: p95 latency (solid) and p50 (dotted) against the offered request rate, and the
answered audio seconds per second beside it, so the knee where a server saturates is visible.

  python scripts/plot_serve_load.py docs/data/serve_open_loop.json --out docs/serve_load.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="bench_serve.py --rates ... --out REPORT.json")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = json.loads(args.report.read_text())
    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(12, 4.8))
    for entry in report["servers"].values():
        levels = sorted((float(rate), level) for rate, level in entry["levels"].items())
        rates = [rate for rate, _ in levels]
        line, = latency.plot(rates, [level["p95_s"] for _, level in levels], marker="o", label=entry["label"])
        latency.plot(rates, [level["p50_s"] for _, level in levels], linestyle=":", color=line.get_color())
        throughput.plot(rates, [level["throughput"] for _, level in levels], marker="o", color=line.get_color(),
                        label=entry["label"])
        if "at_70_percent" in entry:  # the target's point: 70% of the saturation rate
            at70 = entry["at_70_percent"]
            latency.plot([at70["offered_rps"]], [at70["p95_s"]], marker="*", markersize=14, color=line.get_color())
        if "idle" in entry:
            latency.axhline(entry["idle"]["p95_s"] * 3, color=line.get_color(), linewidth=0.6, linestyle="--")
    latency.set_yscale("log")
    latency.set_xlabel("offered load, requests per second (Poisson)")
    latency.set_ylabel("latency, s (p95 solid, p50 dotted; star: p95 at 70% of\nsaturation; dashed: 3x idle p95)")
    throughput.set_xlabel("offered load, requests per second (Poisson)")
    throughput.set_ylabel("answered audio seconds per second")
    throughput.legend(fontsize=8, loc="upper left")
    machine = report.get("machine", {})
    device = machine.get("device") or f"{machine.get('cpus')} CPU cores"
    figure.suptitle(f"{report.get('clips')} short clips, {report.get('mode')}; {device}", fontsize=10)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
