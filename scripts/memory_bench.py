"""Peak memory against file length: transcribe generated long recordings, one fresh process each.

The recordings are dev utterances (LibriSpeech/LJSpeech/Cathy FLACs of ../shared/data/speech-dev)
looped with 1 s of silence between them up to each length, written block by block as 16 kHz
FLAC. Each length runs in its own process, which reports its peak RSS (`ru_maxrss`), so the
numbers do not mix. Modes:

  full      the Transcriber end to end (what `trt-transcribe` runs)
  features  open the file and produce every 30 s window's features, no decoding: the part whose
            memory used to grow with the length (whole-file decode and log-mel)
  whole     the former path, for comparison: whole file decoded and featurized at once

Example (the numbers in docs come from runs like this):

  python scripts/memory_bench.py --minutes 10 60 240 --mode features whole
  python scripts/memory_bench.py --minutes 10 60 --mode full --backend onnxruntime --dense
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT.parent / "shared" / "data" / "speech-dev" / "audio"


def generate(path: Path, minutes: float, rate: int = 16000) -> Path:
    """Dev utterances and 1 s silences, looped to `minutes`, written without holding it all."""
    import soundfile as sf

    if path.is_file() and abs(sf.info(str(path)).duration - minutes * 60) < 1:
        return path
    clips = [sf.read(str(p), dtype="float32")[0] for p in sorted(DEV.glob("ls-*.flac"))[:40]]
    gap, total, written = np.zeros(rate, np.float32), int(minutes * 60 * rate), 0
    tmp = path.with_suffix(".part.flac")
    with sf.SoundFile(str(tmp), "w", rate, 1, format="FLAC", subtype="PCM_16") as out:
        while written < total:
            for clip in clips:
                piece = np.concatenate([clip, gap])[: total - written]
                out.write(piece)
                written += len(piece)
                if written >= total:
                    break
    tmp.rename(path)
    return path


def child(args: argparse.Namespace) -> None:
    """Runs in a fresh process: one mode on one file; prints a JSON line with the peak RSS."""
    started, mode = time.perf_counter(), args.mode[0]
    if mode == "full":
        from whisper_eas.transcribe import Transcriber

        transcriber = Transcriber.from_model(args.model, None if args.dense else _shipped(args.model),
                                             backend=args.backend, batch_size=args.batch_size)
        baseline = _peak_mb()
        started = time.perf_counter()
        result = transcriber.transcribe(args.file)
        info = {"windows": len(result.windows), "words": len(result.text.split()), "duration_s": result.duration_s}
    elif mode == "features":
        from whisper_eas.audio import open_audio
        from whisper_eas.features import N_FRAMES, StreamMel

        baseline = _peak_mb()
        stream = open_audio(args.file)
        mel = StreamMel(stream.blocks, 80)
        windows = 0
        for seek in range(0, mel.content_frames, N_FRAMES):
            mel.frames(seek, min(seek + N_FRAMES, mel.content_frames))
            windows += 1
        info = {"windows": windows, "duration_s": mel.n_samples / 16000}
    else:
        import soundfile as sf

        from whisper_eas.features import N_SAMPLES, log_mel

        baseline = _peak_mb()
        audio = sf.read(args.file, dtype="float32")[0]
        mel = log_mel(audio, 80, padding=N_SAMPLES)
        info = {"windows": mel.shape[-1] // 3000, "duration_s": len(audio) / 16000}
    print(json.dumps({"mode": mode, "file": str(args.file), "peak_rss_mb": round(_peak_mb(), 1),
                      "peak_before_work_mb": round(baseline, 1), "wall_s": round(time.perf_counter() - started, 1),
                      **info}))


def _shipped(model: str):
    from whisper_eas.defaults import shipped_config

    return shipped_config(model)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60, 240])
    parser.add_argument("--mode", nargs="+", choices=["full", "features", "whole"], default=["features", "full"])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--backend", default="pytorch")
    parser.add_argument("--dense", action="store_true")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/whisper-eas-memory-bench"))
    parser.add_argument("--timeout", type=float, default=3600, help="Seconds allowed per run.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for minutes in args.minutes:
        path = generate(args.workdir / f"dev-loop-{minutes:g}min.flac", minutes)
        for mode in args.mode:
            cmd = [sys.executable, __file__, "--child", "--file", str(path), "--mode", mode, "--model", args.model,
                   "--backend", args.backend, "--batch-size", str(args.batch_size)] + (["--dense"] if args.dense else [])
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                row = {"mode": mode, "minutes": minutes, "error": f"timed out after {args.timeout:.0f} s"}
            else:
                lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
                row = {**json.loads(lines[-1]), "minutes": minutes} if lines else {
                    "mode": mode, "minutes": minutes, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
