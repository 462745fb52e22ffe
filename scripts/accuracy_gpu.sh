#!/usr/bin/env bash
# Issue 13's accuracy protocol on a lent GPU: per-utterance transcripts of the baselines and our
# configs, tiny.en and base, speech-dev (tuning) and speech-val (confirmation), three regimes:
# short padded utterances, full 30 s windows, long-form through the Transcriber. float32 PyTorch
# on CUDA (the CPU product path's arithmetic), greedy, quality guard on. Only transcripts are
# written (no jiwer there); they are scored on the CPU machine (`whisper-eas compare`,
# scripts/accuracy_report.py). Payload: `bash scripts/prepare_accuracy_payload.sh` (.devrun/acc).
# Calls from the repository root, each within 30 s of the last (the machine stays warm), one
# payload part each (parts 00-02: tiny.en only; 00-04: tiny.en and base):
#   bash scripts/accuracy_gpu.sh stash    carry .devrun/acc/part00   (then part01, part02, part03)
#   bash scripts/accuracy_gpu.sh run      carry .devrun/acc/part04 .devrun/acc/code.tgz  (timeout_s 600)
# The run uses code.tgz (src/ and scripts/ as committed; refresh it with
# `bash scripts/prepare_accuracy_payload.sh code`), not the working tree.
# Outputs in $OUT: {tiny,base}-{dev,val}-short.json, {tiny,base}-dev-full.json,
# {tiny,base}-{val,dev}-long.json, log.txt.
set -uo pipefail
stage=$1
OUT=${OUT:-/tmp/out}
STASH=/root/stash/acc
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu LIMIT="--limit 1": a smoke test of this script on the CPU machine
LIMIT=${LIMIT:-}
SCALE=${SCALE:-1}  # multiplies every step's timeout (the CPU smoke test: SCALE=6)
mkdir -p "$OUT" "$STASH"
cp .devrun/acc/part* .devrun/acc/code.tgz "$STASH"/ 2>/dev/null
[ -d /tmp/acc/models ] && rm -rf /tmp/acc  # a fresh extraction every run
[ "$stage" = stash ] && { ls -l "$STASH"; exit 0; }
mkdir -p /tmp/acc && cat "$STASH"/part* | tar xf - -C /tmp/acc 2>/dev/null  # parts 00-02: base is cut short
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/acc/whl/*.whl 2>/dev/null
CODE=/tmp/acc/code && rm -rf $CODE && mkdir -p $CODE
if [ -f "$STASH/code.tgz" ]; then tar xzf "$STASH/code.tgz" -C $CODE; else cp -r src scripts $CODE/; fi
export PYTHONPATH=/tmp/site:$CODE/src PYTHONUNBUFFERED=1 WHISPER_EAS_HOME=/tmp/weh TRANSFORMERS_VERBOSITY=error
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv | tee "$OUT/log.txt"
MODELS=""
for model in tiny.en base; do
  if python3 -c "from safetensors import safe_open; safe_open('/tmp/acc/models/$model/model.safetensors', 'pt')" 2>/dev/null; then
    mkdir -p /tmp/weh/models && ln -sfn /tmp/acc/models/$model /tmp/weh/models/$model && MODELS="$MODELS $model"
  fi
done
echo "models:$MODELS" | tee -a "$OUT/log.txt"
has() { [[ " $MODELS " == *" $1 "* ]]; }

# full 30 s windows: cut from speech-dev's long recordings only (speech-val's are not joined the
# same way); on speech-val the no-padding regime is confirmed long-form
python3 $CODE/scripts/make_full_windows.py --dev /tmp/acc/data/speech-dev --out /tmp/acc/data/full-dev 2>&1 | tail -n 1 | tee -a "$OUT/log.txt"
grid() {  # grid MODEL SET MANIFEST REGIME SECONDS
  local model=$1 set=$2 manifest=$3 regime=$4 seconds=$5 short=${1%%.*}
  has "$model" || return 0
  echo "== $short $set $regime" | tee -a "$OUT/log.txt"
  timeout $((seconds * SCALE)) python3 $CODE/scripts/accuracy_grid.py --model "$model" --device "$DEVICE" --batch-size 16 --group-rows 160 $LIMIT \
    --set "$short-$regime" --manifest "$manifest" --out "$OUT/$short-$set-$regime.json" 2>&1 \
    | grep -v "Loading weights" | tail -n 2 | tee -a "$OUT/log.txt"
}
long() {  # long MODEL SET SECONDS
  local model=$1 set=$2 seconds=$3 short=${1%%.*}
  has "$model" || return 0
  echo "== $short $set long" | tee -a "$OUT/log.txt"
  timeout $((seconds * SCALE)) python3 $CODE/scripts/accuracy_longform.py --model "$model" --device "$DEVICE" --set "$short-long" $LIMIT \
    --manifest /tmp/acc/data/speech-$set/manifest-long.tsv --out "$OUT/$short-$set-long.json" 2>&1 \
    | grep -v "Loading weights" | tail -n 9 | tee -a "$OUT/log.txt"
}
start=$(date +%s)
grid tiny.en dev /tmp/acc/data/speech-dev/manifest-short.tsv short 70
grid tiny.en val /tmp/acc/data/speech-val/manifest-short.tsv short 85
grid base dev /tmp/acc/data/speech-dev/manifest-short.tsv short 85
grid base val /tmp/acc/data/speech-val/manifest-short.tsv short 100
grid tiny.en dev /tmp/acc/data/full-dev/manifest.tsv full 20
grid base dev /tmp/acc/data/full-dev/manifest.tsv full 25
long tiny.en val 50
long base val 60
long tiny.en dev 20
long base dev 20
echo "total $(( $(date +%s) - start ))s" | tee -a "$OUT/log.txt"
