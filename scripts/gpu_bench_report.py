"""Render scripts/gpu_bench.py JSON as the markdown tables in docs/benchmarks.md."""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    data = json.load(open(path))
    info = data["info"]
    capability = ".".join(map(str, info["capability"])) if info["capability"] else "n/a"
    print(f"{info['gpu']} (compute capability {capability}), PyTorch {info['torch']}, "
          f"transformers {info['transformers']}; measured copy bandwidth {info['copy_bandwidth_GBps'] / 1000:.2f} TB/s.\n")
    print("| model dims | batch | config | kept frames | encoder ms | encoder speedup | end-to-end ms | end-to-end speedup |"
          " step ms (graph / eager / floor) |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in data["rows"]:
        if "error" in r:
            print(f"| {r['model']} | {r['batch']} | {r['config']} | error: {r['error'][:60]} | | | | | |")
            continue
        print(f"| {r['model']} | {r['batch']} | {r['config']} | {r['kept_frames']} | {r['encoder_ms']['median_ms']:.2f} | "
              f"{r['encoder_speedup']:.2f}x | {r['e2e_ms']['median_ms']:.1f} | {r['e2e_speedup']:.2f}x | "
              f"{r['step_graph_ms']:.3f} / {r['step_eager_ms']:.2f} / {r['step_floor_ms']:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1])
