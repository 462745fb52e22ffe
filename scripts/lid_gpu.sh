#!/usr/bin/env bash
# Issue 18 measurement on a CUDA GPU (pipeline helper). Run from the repo root:
#   PYTHONPATH=src DATA=../shared/data OUT=$OUT bash scripts/lid_gpu.sh     (a few minutes on an H200)
# base, language auto-detected, speech-val (284 files, long ones long-form) and the multilingual clips.
set -euo pipefail
DATA=${DATA:-../shared/data}; OUT=${OUT:-/tmp/lid-gpu}; mkdir -p "$OUT"
python scripts/lid_agreement.py --model base --device cuda "$DATA/speech-val/manifest.tsv" "$DATA"/multilingual/audio/*.flac --json "$OUT/lid-val.json" | tail -9
python scripts/lid_agreement.py --model base --device cuda "$DATA/speech-dev/manifest.tsv" --json "$OUT/lid-dev.json" | tail -9
for cfg in dense shipped; do
  flag=$([ $cfg = dense ] && echo --dense || true)
  python -m whisper_eas.cli.main eval --model base $flag --manifest "$DATA/speech-val/manifest.tsv" --device cuda \
    --batch-size 16 --json "$OUT/base-$cfg-val.json"
done
python scripts/lid_report.py "$OUT/base-dense-val.json" "$OUT/base-shipped-val.json" | tee "$OUT/lid-report.md"
