"""Long-form transcripts of a set of prune configs through the product path (`Transcriber`:
sequential windows, timestamps, temperature fallback, quality guard), float32 PyTorch, written in
the grid format of `scripts/accuracy_grid.py` (one "utterance" per recording), so
`whisper-eas compare FILE#dense FILE#CONFIG` scores it. Resumes from OUT.

    PYTHONPATH=src python scripts/accuracy_longform.py --model tiny.en \
        --manifest ../shared/data/speech-val/manifest-long.tsv --set tiny-long --out long.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from whisper_eas.config import PruneConfig
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.io_utils import atomic_write_json
from whisper_eas.runners.torch_runner import TorchRunner
from whisper_eas.transcribe import Transcriber

sys.path.insert(0, str(Path(__file__).parent))
from accuracy_grid import config_set, extra_configs  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--set", dest="config_set")
    parser.add_argument("--config", action="append", default=[], help="NAME={json PruneConfig dict}")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, help="only the first N recordings")
    args = parser.parse_args()
    configs: dict[str, PruneConfig | None] = {"dense": None}
    configs.update(config_set(args.config_set) if args.config_set else {})
    configs.update(extra_configs(args.config))
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {"points": {}}
    utterances = read_manifest(args.manifest, args.limit)
    data.update(model=args.model, manifest=args.manifest, device=args.device,
                refs={u.id: u.text for u in utterances}, durations={u.id: u.duration_s for u in utterances},
                configs={k: (None if c is None else c.to_dict()) for k, c in configs.items()})
    base = TorchRunner(args.model, device=args.device, dtype=torch.float32)
    for key, config in configs.items():
        if key in data["points"]:
            continue
        started = time.perf_counter()
        runner = base if config is None else TorchRunner(args.model, prune=config, device=args.device,
                                                          dtype=torch.float32, hf_model=base.model)
        transcriber = Transcriber(runner, batch_size=args.batch_size)
        point = {"hyps": {}, "kept": {}, "fallbacks": {}, "windows": {}, "unguarded": {}}
        for outcome in transcriber.transcribe_many([u.path for u in utterances]):  # in the order files finish
            utt = utterances[outcome.index]
            if outcome.error is not None:
                point["fallbacks"][utt.id] = f"error: {outcome.error}"
                continue
            result = outcome.result
            windows = [w for w in result.windows if not w.skipped]
            point["hyps"][utt.id] = result.text
            point["kept"][utt.id] = sum(w.kept_frames for w in windows) / max(1, len(windows))
            point["windows"][utt.id] = [[w.kept_frames, w.n_frames, w.fallback] for w in windows]
            reruns = sum(1 for w in windows if w.fallback)
            if reruns:
                point["fallbacks"][utt.id] = f"{reruns} of {len(windows)} windows"
        point["wall_s"] = time.perf_counter() - started
        data["points"][key] = point
        atomic_write_json(out, data)
        print(f"{key}: {point['wall_s']:.0f}s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
