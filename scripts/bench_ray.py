"""Ray's overhead: `whisper-eas transcribe-dataset` with 1 and 2 actors against `trt-transcribe` in one
process, on the same files, run after one another (interleaved when repeated) so that contention on a
shared machine hits all of them alike. Not a test: it feeds docs/scale-out.md.

    python scripts/bench_ray.py --manifest ../shared/data/speech-dev/manifest-short.tsv --files 100 \
        --shortest --json docs/data/ray_bench.json

Each run is a fresh process (model loading, and Ray's start for the Ray runs, included in `wall_s`);
`ray_start_s` is reported apart. One actor gets 2 CPUs (2 torch threads, as the single process has on
this 2-core machine); two actors get 1 CPU each. The local Ray is given 3 logical CPUs so that the
decoding tasks (0.25 CPU each) are not starved by the actors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUMMARY = re.compile(r"(\d+) file\(s\) ok, (\d+) failed.*?transcribed in ([\d.]+) s")
RAY_START = re.compile(r"Ray start ([\d.]+) s")


def _folder(manifest: Path, n: int, into: Path, shortest: bool) -> tuple[Path, float]:
    """Symlinks to the manifest's first (or shortest) n files; their total duration in seconds."""
    lines = manifest.read_text().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:] if line.strip()]
    if shortest:
        rows.sort(key=lambda row: float(row["duration_s"]))
    folder, total = into / "audio", 0.0
    folder.mkdir()
    for row in rows[:n]:
        source = (manifest.parent / row["path"]).resolve()
        (folder / source.name).symlink_to(source)
        total += float(row["duration_s"])
    return folder, total


def _commands(folder: Path, out: Path, backend: str, single_thread: bool) -> dict[str, list[str]]:
    common = ["--backend", backend, "--output-dir", str(out)]
    ray = ["whisper-eas", "transcribe-dataset", str(folder), *common, "--num-cpus", "3", "--files-per-call", "8"]
    threads = "1" if single_thread else "2"  # torch threads of trt-transcribe and of the single actor
    return {
        "trt-transcribe": ["env", f"OMP_NUM_THREADS={threads}", "trt-transcribe", str(folder), *common],
        "ray-1-actor": [*ray, "--actors", "1", "--cpus-per-actor", threads],
        "ray-2-actors": [*ray, "--actors", "2", "--cpus-per-actor", "1"],
    }


def _run(name: str, command: list[str], out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    load_before = os.getloadavg()[0]
    cpu_before = _children_cpu_s()
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    cpu = _children_cpu_s() - cpu_before
    summary = SUMMARY.search(proc.stderr)
    ray_start = RAY_START.search(proc.stderr)
    if proc.returncode != 0 or summary is None:
        sys.exit(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    texts = {p.name: p.read_text() for p in out.glob("*.txt")}
    print(f"{name}: {wall:.1f} s wall, {cpu:.1f} s CPU ({summary.group(0)}), load average {load_before:.1f}",
          file=sys.stderr)
    return {"name": name, "wall_s": round(wall, 2), "cpu_s": round(cpu, 1), "ok": int(summary.group(1)),
            "failed": int(summary.group(2)),
            "transcribe_s": float(summary.group(3)), "ray_start_s": float(ray_start.group(1)) if ray_start else 0.0,
            "load_average_1min_before": round(load_before, 2), "load_average_1min_after": round(os.getloadavg()[0], 2),
            "texts": texts}


def _children_cpu_s() -> float:
    """User + system CPU seconds of every finished descendant that was waited for: the command, and
    Ray's processes where their parents reaped them (a lower bound for the Ray runs)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--backend", default="pytorch")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--shortest", action="store_true",
                        help="the n shortest files (the most per-file overhead per second of audio)")
    parser.add_argument("--single-thread", action="store_true",
                        help="one torch thread for trt-transcribe and the single actor (on a contended machine "
                             "two OpenMP threads wait on each other)")
    parser.add_argument("--only", nargs="*", help="names of the runs to do (default: all three)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        folder, audio_s = _folder(args.manifest, args.files, Path(tmp), args.shortest)
        out = Path(tmp) / "out"
        commands = _commands(folder, out, args.backend, args.single_thread)
        names = args.only or list(commands)
        runs = [_run(name, commands[name], out) for _ in range(args.repeats) for name in names]
    report = _report(runs, audio_s, args)
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _report(runs: list[dict], audio_s: float, args) -> dict:
    """Median wall per configuration, overhead against trt-transcribe, transcripts compared."""
    import statistics

    by_name: dict[str, list[dict]] = {}
    for run in runs:
        by_name.setdefault(run["name"], []).append(run)
    base = by_name.get("trt-transcribe")
    base_wall = statistics.median(r["wall_s"] for r in base) if base else None
    summary = {}
    for name, group in by_name.items():
        wall = statistics.median(r["wall_s"] for r in group)
        start = statistics.median(r["ray_start_s"] for r in group)
        entry = {"wall_s": wall, "cpu_s": statistics.median(r.get("cpu_s", 0.0) for r in group),
                 "ray_start_s": start, "audio_h_per_hour": round(audio_s / wall, 2),
                 "walls": [r["wall_s"] for r in group]}
        if base_wall:
            entry["overhead_vs_trt"] = round(wall / base_wall - 1, 4)
            entry["overhead_vs_trt_without_ray_start"] = round((wall - start) / base_wall - 1, 4)
            entry["transcripts_differing_from_trt"] = sum(
                group[0]["texts"].get(k) != v for k, v in base[0]["texts"].items())
        summary[name] = entry
    return {"files": args.files, "shortest": args.shortest, "single_thread": args.single_thread, "audio_s": round(audio_s, 1), "backend": args.backend,
            "cpus": os.cpu_count(),
            "summary": summary, "runs": [{k: v for k, v in r.items() if k != "texts"} for r in runs]}


if __name__ == "__main__":
    main()
