"""Transcribe a manifest on the GPU fast path (FP16 + CUDA graphs) and write the hypotheses.

Also runs on the CPU (`--device cpu --dtype float16`, eager, no graphs), which is how the
precision of the FP16 path is checked where no GPU is lent: the same modules, the same FP16
weights and activations, only the kernels differ. Configs: `dense` or
`L:K[:strategy[:stride[:merge]]]`. With `--score`, WER is computed here too (needs jiwer and
whisper-normalizer; the GPU machine lacks them, so there `scripts/score_transcripts.py` scores).

    PYTHONPATH=src python scripts/gpu_transcripts.py --model DIR --manifest M.tsv --configs dense,1:0.5 --out hyps.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from whisper_eas.audio import load_audio
from whisper_eas.config import PruneConfig
from whisper_eas.decoding import DecodingOptions
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.features import window_features
from whisper_eas.guard import GuardOptions
from whisper_eas.runners.cuda_runner import CudaGraphRunner
from whisper_eas.static_graphs import HEAD_PRECISIONS
from whisper_eas.window_decode import decode_windows, window_requests


def parse_config(text: str) -> PruneConfig | None:
    if text == "dense":
        return None
    parts = text.split(":")
    return PruneConfig(layer=int(parts[0]), keep_ratio=float(parts[1]),
                       strategy=parts[2] if len(parts) > 2 else "attentive",
                       query_stride=int(parts[3]) if len(parts) > 3 else 1,
                       merge=len(parts) > 4 and parts[4] == "merge")


def score(utts, hyps: dict[str, str]) -> dict:
    from whisper_eas.evaluation.wer import corpus_wer

    wer, words = corpus_wer([(utt.text, hyps[utt.id]) for utt in utts])
    return {"wer": wer, "errors": round(wer * words / 100), "n_words": words}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--configs", default="dense")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--limit", type=int, default=0, help="first N utterances only (0: all)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", choices=("float16", "float32"), default=None,
                    help="default: float16 on CUDA, float32 on the CPU")
    ap.add_argument("--no-graphs", action="store_true")
    ap.add_argument("--head", choices=HEAD_PRECISIONS, default="model",
                    help="the encoder up to the pruning layer: in --dtype (model), or from float32 copies")
    ap.add_argument("--score", action="store_true", help="compute WER here (needs jiwer)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    utts = read_manifest(args.manifest)
    utts = utts[: args.limit] if args.limit else utts
    mels = [window_features(load_audio(u.path)) for u in utts]
    on_cuda = args.device.startswith("cuda")
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.float16 if on_cuda else torch.float32)
    base = CudaGraphRunner(args.model, None, device=args.device, dtype=dtype, use_graphs=not args.no_graphs)
    out = {"device": torch.cuda.get_device_name() if on_cuda else "cpu", "dtype": str(dtype).split(".")[-1],
           "graphs": on_cuda and not args.no_graphs, "head": args.head, "torch": torch.__version__, "manifest": args.manifest,
           "runs": {}}
    for text in args.configs.split(","):
        runner = CudaGraphRunner(args.model, parse_config(text), device=args.device, dtype=dtype,
                                 hf_model=base.model, use_graphs=not args.no_graphs,
                                 head_precision=args.head)
        hyps, kept, fallbacks, t0 = {}, {}, 0, time.perf_counter()
        for first in range(0, len(utts), args.batch_size):
            batch_utts = utts[first : first + args.batch_size]
            batch = torch.stack(mels[first : first + args.batch_size])
            options = DecodingOptions(language="en")
            for utt, window in zip(batch_utts, decode_windows(runner, window_requests(batch, options), options, guard=GuardOptions())):
                hyps[utt.id] = window.result.text
                fallbacks += window.fallback is not None
                if window.kept is not None:
                    kept[utt.id] = window.kept
        run = {"hyps": hyps, "kept": kept, "fallbacks": fallbacks, "wall_s": time.perf_counter() - t0}
        if args.score:
            run.update(score(utts, hyps))
        out["runs"][text] = run
        print(text, f"{run['wall_s']:.1f}s", "fallbacks", fallbacks,
              f"WER {run['wer']:.2f}%" if args.score else "", flush=True)
        with open(args.out, "w") as f:  # after every config: a run cut short keeps what it finished
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
