"""Long-form WER, dense vs sparse, with a runaway-repetition check; and batch 1 vs 16 throughput.

    python scripts/longform_wer.py --backend pytorch --json /tmp/longform.json
    python scripts/longform_wer.py --backend onnxruntime --engine-dir EXPORT --dense-engine-dir DENSE_EXPORT

WER: every recording of the manifest (default: the dev set's manifest-long.tsv) is transcribed
with `Transcriber` (sequential long-form, timestamps, fallbacks, guard), scored with Whisper's
English normalizer and jiwer. PyTorch runs dense and the model's shipped sparse config; ONNX
Runtime takes its config from each export folder's manifest, so it needs one folder per config.

Throughput: the recordings' consecutive 30 s windows are decoded as independent windows (no
prompt) one at a time and in batches of 16, after one warm-up window; windows per second, median
over --repeats. Wall times include the decoder loop in Python, as the CLI runs it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from whisper_eas.config import PruneConfig
from whisper_eas.decoding import DecodingOptions
from whisper_eas.defaults import shipped_config
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.evaluation.wer import corpus_wer, normalize, word_errors
from whisper_eas.features import N_FRAMES, N_SAMPLES, log_mel, pad_or_trim
from whisper_eas.guard import GuardOptions
from whisper_eas.longform import LongformOptions, WindowRequest
from whisper_eas.runners.auto import build_runner
from whisper_eas.transcribe import Transcriber
from whisper_eas.window_decode import decode_windows

DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "shared/data/speech-dev/manifest-long.tsv"


def word_loop(words: list[str], max_n: int = 8, repeats: int = 3, min_words: int = 12) -> str | None:
    """The first word n-gram (n <= max_n) repeated back to back at least `repeats` times over at least
    `min_words` words, else None. Short stutters ("hold on, hold on, hold on") are misrecognitions,
    not the runaway loops that fill a window until the token limit."""
    for n in range(1, max_n + 1):
        need = max(repeats, -(-min_words // n))
        for start in range(len(words) - need * n + 1):
            gram = words[start : start + n]
            if all(words[start + k * n : start + (k + 1) * n] == gram for k in range(1, need)):
                return " ".join(gram)
    return None


def repetition_report(result, ref: str) -> dict:
    """Signs of runaway repetition in one transcript."""
    hyp_words, ref_words = normalize(result.text).split(), normalize(ref).split()
    return {
        "loop": word_loop(hyp_words),
        "high_compression_segments": sum(1 for s in result.segments if s.compression_ratio > 2.4),
        "hyp_over_ref_words": round(len(hyp_words) / max(1, len(ref_words)), 3),
    }


def run_wer(runner, utterances, batch_size: int) -> dict:
    transcriber = Transcriber(runner, batch_size=batch_size)
    start = time.perf_counter()
    by_index = {o.index: o for o in transcriber.transcribe_many(u.path for u in utterances)}
    wall = time.perf_counter() - start
    files, pairs = [], []
    for i, utt in enumerate(utterances):
        outcome = by_index[i]
        if outcome.error is not None:
            files.append({"id": utt.id, "error": str(outcome.error)})
            continue
        result = outcome.result
        errors, n_words = word_errors(utt.text, result.text)
        pairs.append((utt.text, result.text))
        files.append({
            "id": utt.id, "duration_s": round(result.duration_s, 2), "wer": round(100 * errors / max(1, n_words), 2),
            "segments": len(result.segments), "windows": len(result.windows),
            "dense_reruns": sum(1 for w in result.windows if w.fallback),
            "hot_windows": sum(1 for w in result.windows if w.temperature > 0),
            "repetition": repetition_report(result, utt.text), "hyp": result.text,
        })
    wer, n_words = corpus_wer(pairs)
    audio = sum(f.get("duration_s", 0) for f in files)
    runaway = [f["id"] for f in files
               if "repetition" in f and (f["repetition"]["loop"] or f["repetition"]["hyp_over_ref_words"] > 1.3)]
    return {"wer": round(wer, 2), "n_words": n_words, "wall_s": round(wall, 1),
            "rtf": round(wall / max(audio, 1e-9), 3), "runaway_files": runaway, "files": files}


def windows_of(utterances, n_mels: int, limit: int) -> list[torch.Tensor]:
    from whisper_eas.audio import load_audio

    windows = []
    for utt in utterances:
        mel = log_mel(load_audio(utt.path), n_mels, padding=N_SAMPLES)
        content = mel.shape[-1] - N_FRAMES
        windows += [pad_or_trim(mel[:, s : s + N_FRAMES]) for s in range(0, content, N_FRAMES)]
    return (windows * (1 + limit // max(1, len(windows))))[:limit]


def run_throughput(runner, windows: list[torch.Tensor], batch_size: int, repeats: int) -> dict:
    options = DecodingOptions(without_timestamps=False)
    language = None if runner.tokenizer.multilingual else "en"
    requests = [WindowRequest(w, (), language, seed=i) for i, w in enumerate(windows)]
    decode = lambda rs: decode_windows(runner, rs, options, LongformOptions(), GuardOptions())  # noqa: E731
    decode(requests[:1])  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for first in range(0, len(requests), batch_size):
            decode(requests[first : first + batch_size])
        rates.append(len(requests) / (time.perf_counter() - start))
    return {"batch_size": batch_size, "windows": len(requests), "windows_per_s": round(statistics.median(rates), 4),
            "spread": [round(min(rates), 4), round(max(rates), 4)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--backend", default="pytorch", choices=["pytorch", "onnxruntime", "tensorrt"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--engine-dir", type=Path, help="export folder of the sparse config (onnxruntime/tensorrt)")
    parser.add_argument("--dense-engine-dir", type=Path, help="export folder of the dense model (onnxruntime/tensorrt)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size of the WER runs")
    parser.add_argument("--sparse", help="JSON PruneConfig for the sparse run (default: the model's shipped config)")
    parser.add_argument("--skip-dense", action="store_true")
    parser.add_argument("--skip-wer", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--throughput-windows", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    utterances = read_manifest(args.manifest)
    sparse = PruneConfig.from_dict(json.loads(args.sparse)) if args.sparse else shipped_config(args.model)
    configs = {"dense": (None, args.dense_engine_dir), "sparse": (sparse, args.engine_dir)}
    if args.skip_dense:
        del configs["dense"]
    if args.backend != "pytorch":
        configs = {k: v for k, v in configs.items() if v[1] is not None}
    report = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
              "backend": args.backend, "model": args.model, "manifest": str(args.manifest),
              "sparse_config": sparse.to_dict() if sparse else None, "wer": {}, "throughput": {}}
    for name, (prune, folder) in configs.items():
        runner, _ = build_runner(args.backend, args.model, prune, args.device, folder)
        if not args.skip_wer:
            report["wer"][name] = run_wer(runner, utterances, args.batch_size)
            r = report["wer"][name]
            print(f"{name}: WER {r['wer']:.2f}% ({r['n_words']} words), RTF {r['rtf']}, "
                  f"runaway {r['runaway_files']}", flush=True)
        if not args.skip_throughput and name == "sparse":
            windows = windows_of(utterances, runner.n_mels, args.throughput_windows)
            for batch in (1, 16):
                t = run_throughput(runner, windows, batch, args.repeats)
                report["throughput"][f"batch{batch}"] = t
                print(f"{name} batch {batch}: {t['windows_per_s']:.3f} windows/s", flush=True)
    if "batch1" in report["throughput"] and "batch16" in report["throughput"]:
        speedup = report["throughput"]["batch16"]["windows_per_s"] / report["throughput"]["batch1"]["windows_per_s"]
        report["throughput"]["speedup_16_over_1"] = round(speedup, 3)
        print(f"batch 16 / batch 1 throughput: {speedup:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
