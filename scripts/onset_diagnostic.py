"""The onset diagnostic (`evaluation/onset.py`) over a grid file of `scripts/accuracy_grid.py`:
word errors by part of the speech (onset / middle / end), dense and pruned, beside the share of
encoder frames each config keeps there (recomputed encoder-only), and the utterances whose first
reference words a config loses while dense keeps them.

    PYTHONPATH=src python scripts/onset_diagnostic.py GRID.json --manifest M.tsv [--configs A,B] [--json OUT]
"""

from __future__ import annotations

import argparse
import json

import torch

from whisper_eas.config import PruneConfig
from whisper_eas.evaluation.evaluate import load_window
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.evaluation.onset import diagnose, speech_span
from whisper_eas.runners.torch_runner import TorchRunner
from whisper_eas.search.shared_prefix import DenseStates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--configs", help="comma-separated config names (default: every config)")
    parser.add_argument("--no-kept", action="store_true", help="skip the encoder-only kept-frame pass")
    parser.add_argument("--json")
    args = parser.parse_args()
    grid = json.loads(open(args.grid).read())
    names = args.configs.split(",") if args.configs else [k for k in grid["points"] if k != "dense"]
    utterances = [u for u in read_manifest(args.manifest) if u.id in grid["points"]["dense"]["hyps"]]
    runner = TorchRunner(grid["model"])
    spans, kept = {}, {name: {} for name in names}
    mels = {u.id: load_window(u, runner.n_mels) for u in utterances}
    for uid, mel in mels.items():
        spans[uid] = speech_span(mel)
    if not args.no_kept:
        configs = {name: PruneConfig.from_dict(grid["configs"][name]) for name in names}
        ids = list(mels)
        for first in range(0, len(ids), 8):
            batch = ids[first : first + 8]
            states = DenseStates(runner.model, torch.stack([mels[i] for i in batch]))
            for name, config in configs.items():
                for j, uid in enumerate(batch):
                    one = states.select(j) if config.per_input else states
                    encoded = one.encode(config)
                    row = encoded.kept[0 if config.per_input else j]
                    kept[name][uid] = [int(i) for i in row if i >= 0]
    refs = {u.id: u.text for u in utterances}
    out = {}
    for name in names:
        report = diagnose(refs, grid["points"]["dense"]["hyps"], grid["points"][name]["hyps"], spans,
                          None if args.no_kept else kept[name])
        print(f"== {name}\n{report.table()}\n   lost: {' '.join(report.onset_lost)}")
        out[name] = report.to_dict()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"grid": args.grid, "spans": spans, "reports": out}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
