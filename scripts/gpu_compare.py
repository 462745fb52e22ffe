"""Whole processes on one GPU: `trt-transcribe --device cuda` against transformers' Whisper in FP16
(scripts/hf_transcribe.py) on the same files and weights, in turn, with WER (scripts/gpu_check.sh).

Why not faster-whisper: its CTranslate2 wheel needs CUDA 12's cuBLAS and the lent GPU machine has
CUDA 13 only, so the same-GPU peer is what Hugging Face users run there. Per manifest (a folder of
files) and mode (`sequential`: trt-transcribe against generate's batched short clips and
sequential long-form; `batched`: `trt-transcribe --batched` against the chunked pipeline), after
one untimed run of each on the shortest file (imports and CUDA libraries into the page cache):
`--rounds` timed runs of the whole folder, each its own process (imports, model load, CUDA-graph
capture, audio decoding and writing included), the systems taking turns. Reported: wall seconds
(median), audio seconds per wall second, peak resident memory (`wait4`), WER of each and ours minus
the baseline with its paired bootstrap 95% interval (Whisper's English normalizer).

    python scripts/gpu_compare.py --manifest long.tsv --manifest short.tsv --device cuda \\
        --mode sequential --mode batched --json gpu_compare.json --markdown gpu_compare.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from process_compare import fw_texts, ours_texts, run_measured, wer_of  # scripts/ is on sys.path

OURS, HF = "whisper-eas", "transformers"
HERE = Path(__file__).resolve().parent


def commands(inputs: list[str], args, batched: bool, out_dir: Path) -> dict[str, list[str]]:
    flag = ["--batched"] if batched else []
    size = ["--batch-size", str(args.batch_size)]
    return {OURS: [sys.executable, "-m", "whisper_eas.cli.transcribe_cmd", *inputs, "--model", args.model,
                   "--device", args.device, "--format", "json", "--output-dir", str(out_dir), "--overwrite",
                   *size, *flag],
            HF: [sys.executable, str(HERE / "hf_transcribe.py"), *inputs, "--model", args.hf_model,
                 "--device", args.device, *size, *flag]}


def warm_up(path: Path, args, scratch: Path) -> None:
    """One untimed run of each system on one file: imports, weights and CUDA libraries into the page cache."""
    for command in commands([str(path)], args, False, scratch / "warm-up").values():
        run_measured(command)


def set_name(manifest: str) -> str:
    """`long` for long/manifest.tsv, `manifest-long` for manifest-long.tsv."""
    path = Path(manifest)
    return path.parent.name if path.stem == "manifest" else path.stem


def run_block(folder: Path, args, batched: bool, scratch: Path) -> dict:
    """Both systems over `folder`, `rounds` timed runs each, taking turns."""
    out_dir = scratch / f"ours-{folder.name}-{'batched' if batched else 'sequential'}"
    timed = commands([str(folder)], args, batched, out_dir)
    times: dict[str, list[float]] = {OURS: [], HF: []}
    peaks: dict[str, float] = {OURS: 0.0, HF: 0.0}
    texts: dict[str, dict[str, str]] = {OURS: {}, HF: {}}
    for r in range(args.rounds):
        for system in ([OURS, HF] if r % 2 == 0 else [HF, OURS]):
            wall, peak, stdout = run_measured(timed[system])
            times[system].append(round(wall, 2))
            peaks[system] = max(peaks[system], round(peak))
            texts[system] = ours_texts(out_dir) if system == OURS else fw_texts(stdout)
            print(f"    {system}: {wall:.1f} s", flush=True)
    return {"times": times, "peak_mb": peaks, "texts": texts}


def score(block: dict, refs: dict[str, str], audio_s: float) -> dict:
    from whisper_eas.evaluation.stats import compare

    texts = block.pop("texts")
    median = {s: statistics.median(t) for s, t in block["times"].items()}
    block |= {"median_s": median, "audio_s_per_s": {s: round(audio_s / m, 1) for s, m in median.items()},
              "speedup": round(median[HF] / median[OURS], 2),
              "wer": {s: wer_of(texts[s], refs) for s in (OURS, HF)},
              "ours_minus_baseline": compare(refs, texts[HF], texts[OURS])["all"]}
    block["transcripts"] = texts
    return block


def markdown(result: dict) -> str:
    lines = [f"{result['gpu']}; model {result['model']}, batch size {result['batch_size']}, {result['rounds']} "
             f"timed round(s), whole processes; baseline: transformers' Whisper "
             f"({'FP16' if 'CPU' not in result['gpu'] else 'float32'}, scripts/hf_transcribe.py)", "",
             "| files | mode | audio s | ours s | baseline s | speed-up | ours audio s/s | ours WER % | "
             "baseline WER % | ours minus baseline [95%] | ours MB | baseline MB |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for b in result["blocks"]:
        d = b["ours_minus_baseline"]
        lines.append(f"| {b['set']} ({b['files']}) | {b['mode']} | {b['audio_s']:.0f} | {b['median_s'][OURS]:.1f} | "
                     f"{b['median_s'][HF]:.1f} | {b['speedup']:.2f}x | {b['audio_s_per_s'][OURS]:.0f} | "
                     f"{b['wer'][OURS]:.2f} | {b['wer'][HF]:.2f} | {d['delta']:+.2f} [{d['low']:+.2f}, "
                     f"{d['high']:+.2f}] | {b['peak_mb'][OURS]:.0f} | {b['peak_mb'][HF]:.0f} |")
    for failed in result.get("failed", []):
        lines.append(f"\n{failed['set']}, {failed['mode']}: failed: {failed['error'].strip().splitlines()[-1]}")
    return "\n".join(lines)


def gpu_name(device: str) -> str:
    import subprocess

    if not device.startswith("cuda"):
        return "CPU (a dry run of the GPU check)"
    query = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
    return subprocess.run(query, capture_output=True, text=True).stdout.strip() or "CUDA device"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", action="append", required=True, help="one folder of files per manifest")
    ap.add_argument("--mode", action="append", choices=["sequential", "batched"])
    ap.add_argument("--model", default="tiny.en", help="ours: as trt-transcribe's --model")
    ap.add_argument("--hf-model", help="the baseline's checkpoint folder (default: ours, resolved)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch-size", type=int, default=16, help="both systems")
    ap.add_argument("--limit", type=int, help="only the first N files of each manifest")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    args = ap.parse_args()
    from whisper_eas.checkpoints.registry import resolve_model
    from whisper_eas.evaluation.manifest import read_manifest

    args.hf_model = args.hf_model or str(resolve_model(args.model))
    result = {"gpu": gpu_name(args.device), "model": args.model, "batch_size": args.batch_size,
              "rounds": args.rounds, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "blocks": []}
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        sets = {set_name(manifest): read_manifest(manifest, args.limit) for manifest in args.manifest}
        for name, utts in sets.items():
            (scratch / name).mkdir()
            for utt in utts:
                (scratch / name / Path(utt.path).name).symlink_to(Path(utt.path).resolve())
        print("warm-up", flush=True)
        warm_up(min((u for utts in sets.values() for u in utts), key=lambda u: u.duration_s).path, args, scratch)
        for name, utts in sets.items():
            refs = {Path(u.path).stem: u.text for u in utts}
            audio_s = sum(u.duration_s for u in utts)
            for mode in args.mode or ["sequential"]:
                print(f"{name}, {mode}: {len(utts)} files, {audio_s:.0f} s", flush=True)
                head = {"set": name, "mode": mode, "files": len(utts), "audio_s": audio_s}
                try:
                    block = run_block(scratch / name, args, mode == "batched", scratch)
                except SystemExit as failure:  # one failed command: the others still run and are written
                    result.setdefault("failed", []).append(head | {"error": str(failure)[-2000:]})
                    print(f"    failed: {str(failure)[-600:]}", flush=True)
                    continue
                result["blocks"].append(head | score(block, refs, audio_s))
                write(result, args)  # after every block: a run cut short keeps what it measured
    print("\n" + markdown(result))


def write(result: dict, args) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(result) + "\n")


if __name__ == "__main__":
    main()
