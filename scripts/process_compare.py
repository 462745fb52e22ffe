"""Whole processes, as users run them: `trt-transcribe` (its defaults, no flags) against a plain
faster-whisper int8 script (scripts/fw_transcribe.py) on the same files, in turn.

Every command is its own process (imports, model load, audio decoding, writing), timed wall-clock,
with its peak resident memory (the child's `ru_maxrss` from `wait4`). Two ways users run it:

* `--per-file`: one process per recording (`trt-transcribe FILE`), the per-recording ratio and
  the median ratio over recordings beside the total, so no single recording carries the result;
* `--folder`: one process over the whole folder (`trt-transcribe DIR`).

`--mode sequential` compares `trt-transcribe` with `WhisperModel.transcribe` (greedy, no VAD);
`--mode batched` compares `trt-transcribe --batched` with `BatchedInferencePipeline` (batch 8).
One untimed run of each first (trt-transcribe's first run exports its graphs into the model
cache). WER of each system's text (the last round), Whisper's English normalizer.

    python scripts/process_compare.py --manifest ../shared/data/speech-dev/manifest-long.tsv \\
        --manifest ../shared/data/speech-val/manifest-long.tsv --per-file --folder \\
        --mode sequential --mode batched --rounds 2 --json out.json --markdown out.md
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

OURS, FW = "whisper-eas", "faster-whisper int8"


def run_measured(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak resident MB, stdout) of one process; the peak is its own (`wait4`)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{err.read()[-2000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def ours_command(inputs: list[str], model: str, batched: bool, out_dir: Path) -> list[str]:
    return ([str(Path(sys.executable).parent / "trt-transcribe"), *inputs, "--format", "json",
             "--output-dir", str(out_dir), "--overwrite"] + (["--model", model] if model != "tiny.en" else [])
            + (["--batched"] if batched else []))


def fw_command(inputs: list[str], ct2: Path, batched: bool) -> list[str]:
    return ([sys.executable, str(Path(__file__).parent / "fw_transcribe.py"), *inputs, "--model", str(ct2)]
            + (["--batched"] if batched else []))


def ours_texts(out_dir: Path) -> dict[str, str]:
    return {p.stem: json.loads(p.read_text())["text"] for p in out_dir.glob("*.json")}


def fw_texts(stdout: str) -> dict[str, str]:
    pairs = (line.split("\t", 1) for line in stdout.splitlines() if "\t" in line)
    return {Path(path).stem: text for path, text in pairs}


def compare(jobs: dict[str, list[str]], model: str, ct2: Path, batched: bool, rounds: int,
            scratch: Path) -> dict:
    """Each job (name -> inputs) run by both systems, `rounds` times in turn after one untimed run."""
    out_dir = scratch / "ours"
    records: dict[str, dict] = {}
    texts: dict[str, dict[str, str]] = {OURS: {}, FW: {}}
    for name, inputs in jobs.items():
        commands = {OURS: ours_command(inputs, model, batched, out_dir), FW: fw_command(inputs, ct2, batched)}
        for command in commands.values():
            run_measured(command)  # untimed: first-run export, file cache
        times: dict[str, list[float]] = {OURS: [], FW: []}
        peaks: dict[str, list[float]] = {OURS: [], FW: []}
        for r in range(rounds):
            order = [OURS, FW] if r % 2 == 0 else [FW, OURS]
            for system in order:
                wall, peak, stdout = run_measured(commands[system])
                times[system].append(wall)
                peaks[system].append(peak)
                if system == FW:
                    texts[FW].update(fw_texts(stdout))
            texts[OURS].update(ours_texts(out_dir))
        record = {s: {"median_s": statistics.median(times[s]), "times": times[s], "peak_mb": max(peaks[s])}
                  for s in (OURS, FW)}
        record["ratio"] = record[FW]["median_s"] / record[OURS]["median_s"]
        records[name] = record
        print(f"  {name}: ours {record[OURS]['median_s']:.2f} s ({record[OURS]['peak_mb']:.0f} MB), "
              f"faster-whisper {record[FW]['median_s']:.2f} s ({record[FW]['peak_mb']:.0f} MB): "
              f"{record['ratio']:.2f}x", flush=True)
    return {"records": records, "texts": texts}


def summary(records: dict[str, dict]) -> dict:
    ratios = [r["ratio"] for r in records.values()]
    total = {s: sum(r[s]["median_s"] for r in records.values()) for s in (OURS, FW)}
    return {"median_ratio": statistics.median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios),
            "total_ratio": total[FW] / total[OURS], "total_s": total,
            "peak_mb": {s: max(r[s]["peak_mb"] for r in records.values()) for s in (OURS, FW)},
            "median_peak_mb": {s: statistics.median(r[s]["peak_mb"] for r in records.values()) for s in (OURS, FW)}}


def wer_of(texts: dict[str, str], refs: dict[str, str]) -> float | None:
    from whisper_eas.evaluation.wer import corpus_wer

    keys = [k for k in refs if k in texts]
    return corpus_wer([(refs[k], texts[k]) for k in keys])[0] if keys else None


def markdown(result: dict) -> str:
    lines = [f"{result['audio_s']:.0f} s of audio in {result['n_files']} files, model {result['model']}, "
             f"{result['rounds']} rounds in turn (median), {result['machine']}, load at the end {result['load']}", ""]
    for block in result["blocks"]:
        s = block["summary"]
        lines += [f"### {block['mode']}, {block['how']}", "",
                  f"median ratio **{s['median_ratio']:.2f}x** (min {s['min_ratio']:.2f}x, max {s['max_ratio']:.2f}x), "
                  f"total {s['total_ratio']:.2f}x ({s['total_s'][OURS]:.1f} s against {s['total_s'][FW]:.1f} s); "
                  f"peak memory {s['peak_mb'][OURS]:.0f} MB against {s['peak_mb'][FW]:.0f} MB "
                  f"({s['peak_mb'][OURS] / s['peak_mb'][FW]:.2f}x); WER {block['wer'][OURS]:.2f}% against "
                  f"{block['wer'][FW]:.2f}%", ""]
        if len(block["records"]) > 1:
            lines += ["| recording | ours s | faster-whisper s | ratio | ours MB | faster-whisper MB |",
                      "| --- | ---: | ---: | ---: | ---: | ---: |"]
            for name, r in block["records"].items():
                lines.append(f"| {name} | {r[OURS]['median_s']:.2f} | {r[FW]['median_s']:.2f} | {r['ratio']:.2f}x | "
                             f"{r[OURS]['peak_mb']:.0f} | {r[FW]['peak_mb']:.0f} |")
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", action="append", required=True)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--mode", action="append", choices=["sequential", "batched"])
    ap.add_argument("--per-file", action="store_true", help="one process per recording")
    ap.add_argument("--folder", action="store_true", help="one process over the whole folder")
    ap.add_argument("--limit", type=int, help="only the first N files of each manifest")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    args = ap.parse_args()
    if not (args.per_file or args.folder):
        ap.error("give --per-file, --folder or both")
    from whisper_eas.checkpoints.registry import embedded_ct2_dir
    from whisper_eas.evaluation.manifest import read_manifest

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        ct2 = Path(args.model) if Path(args.model).is_dir() else embedded_ct2_dir(args.model, scratch / "ct2")
        folder = scratch / "audio"
        folder.mkdir()
        refs, files, audio_s = {}, [], 0.0
        for manifest in args.manifest:
            for utt in read_manifest(manifest, args.limit):
                link = folder / Path(utt.path).name
                link.symlink_to(Path(utt.path).resolve())
                files.append(str(link))
                refs[link.stem] = utt.text
                audio_s += utt.duration_s
        blocks = []
        for mode in args.mode or ["sequential"]:
            batched = mode == "batched"
            hows = (["one process per recording"] if args.per_file else []) + (["one process per folder"] if args.folder else [])
            for how in hows:
                print(f"{mode}, {how}:", flush=True)
                jobs = ({Path(f).stem: [f] for f in files} if how.endswith("recording") else {"folder": [str(folder)]})
                done = compare(jobs, args.model, ct2, batched, args.rounds, scratch)
                blocks.append({"mode": mode, "how": how, "records": done["records"],
                               "summary": summary(done["records"]),
                               "wer": {s: wer_of(done["texts"][s], refs) for s in (OURS, FW)}})
    load = " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "?"
    machine = f"{os.cpu_count()} CPU cores"
    result = {"model": args.model, "audio_s": audio_s, "n_files": len(files), "rounds": args.rounds,
              "manifests": args.manifest, "load": load, "machine": machine, "blocks": blocks,
              "date": time.strftime("%Y-%m-%d")}
    text = markdown(result)
    print("\n" + text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
