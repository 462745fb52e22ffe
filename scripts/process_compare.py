"""Whole processes, as users run them: `trt-transcribe DIR` (its defaults, no flags) against a
plain faster-whisper int8 script (scripts/fw_transcribe.py) on the same files, alternated.

Each command runs as its own process (imports, model load, audio decoding, everything), timed
wall-clock, `--rounds` times in turn; one untimed run of each first (trt-transcribe's first run
exports the int8 graphs into the model cache, which is reported apart). Prints a markdown table.

    python scripts/process_compare.py --manifest ../shared/data/speech-dev/manifest-long.tsv \\
        --manifest ../shared/data/speech-val/manifest-long.tsv --rounds 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", action="append", required=True)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    from whisper_eas.evaluation.manifest import read_manifest

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "audio"
        folder.mkdir()
        audio_s = 0.0
        for manifest in args.manifest:
            for utt in read_manifest(manifest):
                (folder / Path(utt.path).name).symlink_to(Path(utt.path).resolve())
                audio_s += utt.duration_s
        bin_dir = Path(sys.executable).parent
        commands = {
            "trt-transcribe (defaults)": [str(bin_dir / "trt-transcribe"), str(folder)]
            + (["--model", args.model] if args.model != "tiny.en" else []),
            "faster-whisper int8 script": [sys.executable, str(Path(__file__).parent / "fw_transcribe.py"), str(folder),
                                           "--model", args.model],
        }
        first = {name: run(cmd) for name, cmd in commands.items()}
        times: dict[str, list[float]] = {name: [] for name in commands}
        for r in range(args.rounds):
            for name, cmd in commands.items():
                times[name].append(run(cmd))
                print(f"round {r + 1} {name}: {times[name][-1]:.1f}s", flush=True)
    fw = statistics.median(times["faster-whisper int8 script"])
    load = " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "?"
    print(f"\n{audio_s:.0f} s of audio, model {args.model}, {args.rounds} rounds "
          f"alternated (median), load average {load} at the end\n")
    print("| process | first run s | median s | min-max s | RTFx | vs faster-whisper int8 |\n|---|---:|---:|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {first[name]:.1f} | {median:.1f} | {min(values):.1f}-{max(values):.1f} | "
              f"{audio_s / median:.1f} | {fw / median:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"audio_s": audio_s, "first": first, "times": times, "load": load,
                                               "model": args.model}, indent=1))


if __name__ == "__main__":
    main()
