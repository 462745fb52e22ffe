"""Batched long-form side by side: ours (ONNX Runtime exports, dense or pruned) against
faster-whisper's `BatchedInferencePipeline`, on long recordings, in one process.

Both sides cut the files with Silero VAD into chunks of <= 30 s, decode `batch_size` chunks at a
time, greedy, without timestamps and without previous text (faster-whisper's batched defaults,
except beam 1 for both). Systems take turns after a warm-up, so ratios hold on a busy machine.

    python -m whisper_eas.benchmark.batched --manifest M.tsv [--manifest M2.tsv] --export NAME=DIR ...

`batched_systems` is the part other benchmarks call: name -> function(list of arrays) -> texts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from whisper_eas.audio import SAMPLE_RATE, load_audio
from whisper_eas.batched_longform import BatchedOptions
from whisper_eas.checkpoints.registry import embedded_ct2_dir
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.evaluation.wer import corpus_wer

System = Callable[[list[np.ndarray]], list[str]]


def ours_batched(engine_dir: str | Path, batch_size: int, threads: int | None = None) -> System:
    """whisper-eas batched long-form on one ONNX Runtime export folder."""
    from whisper_eas.runners.ort_runner import OrtRunner
    from whisper_eas.transcribe import Transcriber

    transcriber = Transcriber(OrtRunner(engine_dir, threads=threads), batch_size=batch_size,
                              batched=BatchedOptions())
    return lambda audios: [transcriber.transcribe(audio).text for audio in audios]


def fw_batched(model_dir: str | Path, compute_type: str, batch_size: int, threads: int = 0) -> System:
    """faster-whisper's BatchedInferencePipeline: VAD chunks, batch `batch_size`, greedy, no timestamps."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=threads)
    pipeline = BatchedInferencePipeline(model)

    def run(audios):
        texts = []
        for audio in audios:
            segments, _ = pipeline.transcribe(audio, batch_size=batch_size, beam_size=1, without_timestamps=True,
                                              language="en" if not model.model.is_multilingual else None)
            texts.append(" ".join(s.text.strip() for s in segments).strip())
        return texts

    return run


def batched_systems(exports: dict[str, Path], ct2_dir: Path | None, batch_size: int,
                    threads: int | None = None) -> dict[str, System]:
    """Our exports (name -> folder) and faster-whisper int8 batched on `ct2_dir` (if given)."""
    systems = {f"whisper-eas batched {name}": ours_batched(folder, batch_size, threads)
               for name, folder in exports.items()}
    if ct2_dir is not None:
        systems[f"faster-whisper int8 batched (batch {batch_size})"] = fw_batched(ct2_dir, "int8", batch_size,
                                                                                 threads or 0)
    return systems


def measure(systems: dict[str, System], audios: list[np.ndarray], refs: list[str], repeats: int) -> list[dict]:
    """Warm each system on one file, then `repeats` rounds: file by file, the systems taking turns
    on each file (so a slow spell on a shared machine hits all of them). Per-file times are kept."""
    for name, run in systems.items():
        run(audios[:1])
    times = {name: np.zeros((repeats, len(audios))) for name in systems}
    texts: dict[str, list[str]] = {name: [""] * len(audios) for name in systems}
    for r in range(repeats):
        for i, audio in enumerate(audios):
            for name, run in systems.items():
                start = time.perf_counter()
                texts[name][i] = run([audio])[0]
                times[name][r, i] = time.perf_counter() - start
        print("round", r + 1, {name: round(float(t[r].sum()), 2) for name, t in times.items()}, flush=True)
    audio_s = sum(len(a) for a in audios) / SAMPLE_RATE
    rows = []
    for name in systems:
        totals = times[name].sum(axis=1)
        seconds = float(np.median(totals))
        wer, words = corpus_wer(list(zip(refs, texts[name])))
        rows.append({"system": name, "seconds": round(seconds, 2), "rtfx": round(audio_s / seconds, 1),
                     "wer": round(wer, 2), "words": words, "spread": round(float(np.ptp(totals)) / seconds, 3),
                     "file_seconds": np.median(times[name], axis=0).round(3).tolist(), "texts": texts[name]})
    return rows


def markdown(rows: list[dict], baseline: str) -> str:
    base = next((r["seconds"] for r in rows if r["system"].startswith(baseline)), None)
    lines = ["| system | seconds | RTFx | vs faster-whisper batched | WER |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ratio = f"{base / r['seconds']:.2f}x" if base else "-"
        lines.append(f"| {r['system']} | {r['seconds']:.2f} | {r['rtfx']} | {ratio} | {r['wer']:.2f}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", action="append", required=True, help="TSV of long recordings (repeatable)")
    parser.add_argument("--export", action="append", default=[], help="NAME=DIR of an ONNX export (repeatable)")
    parser.add_argument("--ct2-dir", type=Path, help="CTranslate2 folder for faster-whisper (default: --model's)")
    parser.add_argument("--model", default="tiny.en",
                        help="embedded model whose CTranslate2 weights faster-whisper runs")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    exports = dict(item.split("=", 1) for item in args.export)
    utts = [u for m in args.manifest for u in read_manifest(m)]
    audios, refs = [load_audio(u.path) for u in utts], [u.text for u in utts]
    with tempfile.TemporaryDirectory() as scratch:  # the joined model.bin is only read while loading
        ct2_dir = args.ct2_dir or embedded_ct2_dir(args.model, Path(scratch))
        systems = batched_systems({k: Path(v) for k, v in exports.items()}, ct2_dir, args.batch_size, args.threads)
    rows = measure(systems, audios, refs, args.repeats)
    print(markdown(rows, "faster-whisper int8 batched"))
    if args.json:
        args.json.write_text(json.dumps({"files": [u.id for u in utts], "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
