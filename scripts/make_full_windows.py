"""Cut the dev set's long recordings into full 30 s windows of continuous speech (the hard regime).

    python scripts/make_full_windows.py --dev ../shared/data/speech-dev --out runs/full30
Writes OUT/*.wav and OUT/manifest.tsv (not committed: derived from the dev set).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from whisper_eas.evaluation.full_windows import plan_windows, write_windows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dev", default="../shared/data/speech-dev", type=Path)
    ap.add_argument("--out", default="runs/full30", type=Path)
    ap.add_argument("--min-seconds", type=float, default=20.0)
    args = ap.parse_args()
    windows = plan_windows(args.dev / "manifest-long.tsv", args.dev / "manifest-short.tsv", min_s=args.min_seconds)
    manifest = write_windows(windows, args.out)
    print(f"{len(windows)} windows, {sum(len(w.text.split()) for w in windows)} words -> {manifest}")


if __name__ == "__main__":
    main()
