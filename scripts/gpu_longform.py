"""GPU long-form benchmark: the product's CUDA-graph runner and decoding loop on real recordings.

`Transcriber.from_model(..., backend="pytorch", device="cuda")` is what `trt-transcribe --device
cuda` runs: FP16 weights, static shapes, each decoder step a CUDA-graph replay, openai/whisper's
sequential long-form algorithm (timestamps, previous-text conditioning, fallback, quality guard).
For dense and the shipped config: one untimed pass over every recording (graph capture), then
`--repeats` timed passes in two modes, taking turns: `sequential` (one file at a time, as a
single-stream user) and `across-files` (`transcribe_many`, windows of different files batched,
`--batch-size`, as `trt-transcribe DIR` does). RTFx = audio seconds / wall seconds, with the
device synchronized. Transcripts go to the JSON, scored on the CPU machine (no jiwer here):

    bash scripts/gpu_longform.sh prepare   # CPU machine: the payload, .devrun/speed1 and speed2
    bash scripts/gpu_longform.sh stash     # GPU machine, carry .devrun/speed1 (half the weights)
    bash scripts/gpu_longform.sh run       # GPU machine, carry .devrun/speed2, right after: < 4 min
    # CPU machine: WER of the fetched JSON
    python scripts/gpu_longform.py --score FETCHED/gpu_longform.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

SHIPPED = {"layer": 1, "keep_ratio": 0.5, "strategy": "coverage", "merge": True, "query_stride": 4,
           "uniform_floor": 0.5}  # tiny.en's shipped config (src/whisper_eas/data/defaults.json)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run(args) -> dict:
    import torch

    from whisper_eas.audio import load_audio
    from whisper_eas.config import PruneConfig
    from whisper_eas.evaluation.manifest import read_manifest
    from whisper_eas.transcribe import Transcriber

    utts = read_manifest(args.manifest)
    audios = [load_audio(u.path) for u in utts]
    audio_s = sum(len(a) for a in audios) / 16000
    configs = {"dense": None, "shipped": PruneConfig.from_dict(SHIPPED)}
    out = {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
           "torch": torch.__version__, "python": platform.python_version(), "audio_s": audio_s,
           "ids": [u.id for u in utts], "refs": [u.text for u in utts], "repeats": args.repeats,
           "batch_size": args.batch_size, "results": {}}
    transcribers = {}
    for name, prune in configs.items():
        started = time.perf_counter()
        transcribers[name] = Transcriber.from_model(args.model, prune, backend="pytorch", device=args.device,
                                                    batch_size=args.batch_size)
        for audio in audios:  # warm-up: captures the graphs of every shape these recordings use
            transcribers[name].transcribe(audio)
        list(transcribers[name].transcribe_many(audios))
        _sync()
        print(f"{name}: built and warmed up in {time.perf_counter() - started:.1f}s "
              f"({transcribers[name].runner.describe()['backend']})", flush=True)
    modes = {"sequential": lambda t: [t.transcribe(a).text for a in audios],
             "across-files": lambda t: [o.result.text for o in t.transcribe_many(audios)]}
    for r in range(args.repeats):
        for name, transcriber in transcribers.items():
            for mode, fn in modes.items():
                _sync()
                start = time.perf_counter()
                texts = fn(transcriber)
                _sync()
                wall = time.perf_counter() - start
                entry = out["results"].setdefault(f"{name} {mode}", {"times": [], "texts": texts})
                entry["times"].append(wall)
                print(f"repeat {r + 1} {name} {mode}: {wall:.2f}s, RTFx {audio_s / wall:.0f}", flush=True)
    for entry in out["results"].values():
        entry["median_s"] = statistics.median(entry["times"])
        entry["rtfx"] = audio_s / entry["median_s"]
    return out


def score(path: Path) -> None:
    from whisper_eas.evaluation.wer import corpus_wer

    data = json.loads(path.read_text())
    print(f"{data['gpu']}, torch {data['torch']}: {len(data['ids'])} recordings, {data['audio_s']:.0f} s of audio, "
          f"median of {data['repeats']} passes, batch {data['batch_size']} across files")
    print("| system | seconds | RTFx | WER % |\n|---|---:|---:|---:|")
    for name, entry in data["results"].items():
        wer = corpus_wer(list(zip(data["refs"], entry["texts"])))[0]
        print(f"| {name} | {entry['median_s']:.2f} | {entry['rtfx']:.0f} | {wer:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="/tmp/tiny.en", help="tiny.en folder (config + safetensors)")
    ap.add_argument("--manifest", default=".devrun/speed2/long/manifest.tsv")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default="gpu_longform.json")
    ap.add_argument("--score", type=Path, help="Score a fetched JSON on the CPU machine instead.")
    args = ap.parse_args()
    if args.score:
        score(args.score)
        return
    result = run(args)
    Path(args.out).write_text(json.dumps(result, indent=1))
    for name, entry in result["results"].items():
        print(f"{name}: {entry['median_s']:.2f}s RTFx {entry['rtfx']:.0f}")


if __name__ == "__main__":
    main()
