"""Transcribe a manifest on the GPU fast path (FP16 + CUDA graphs) and write the hypotheses.

Scoring happens elsewhere (`scripts/score_transcripts.py`), so this runs on a machine with only
torch/transformers/tokenizers/soundfile. Configs: `dense` or `L:K[:strategy[:stride]]`.

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
from whisper_eas.windows import decode_windows


def parse_config(text: str) -> PruneConfig | None:
    if text == "dense":
        return None
    parts = text.split(":")
    return PruneConfig(layer=int(parts[0]), keep_ratio=float(parts[1]),
                       strategy=parts[2] if len(parts) > 2 else "attentive",
                       query_stride=int(parts[3]) if len(parts) > 3 else 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--configs", default="dense")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--no-graphs", action="store_true")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    utts = read_manifest(args.manifest)
    mels = [window_features(load_audio(u.path)) for u in utts]
    dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    base = CudaGraphRunner(args.model, None, device=args.device, dtype=dtype, use_graphs=not args.no_graphs)
    out = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
           "torch": torch.__version__, "runs": {}}
    for text in args.configs.split(","):
        runner = CudaGraphRunner(args.model, parse_config(text), device=args.device, dtype=dtype,
                                 hf_model=base.model, use_graphs=not args.no_graphs)
        hyps, fallbacks, t0 = {}, 0, time.perf_counter()
        for first in range(0, len(utts), args.batch_size):
            batch = torch.stack(mels[first : first + args.batch_size])
            for utt, window in zip(utts[first : first + args.batch_size],
                                   decode_windows(runner, batch, DecodingOptions(language="en"), GuardOptions())):
                hyps[utt.id] = window.result.text
                fallbacks += window.fallback is not None
        out["runs"][text] = {"hyps": hyps, "fallbacks": fallbacks, "wall_s": time.perf_counter() - t0}
        print(text, f"{time.perf_counter() - t0:.1f}s", "fallbacks", fallbacks, flush=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
