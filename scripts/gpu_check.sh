#!/usr/bin/env bash
# The product's GPU check: every GPU measurement in one script, two device calls back to back on one
# lent GPU machine (H100 or H200: PyTorch 2.11 with CUDA 13, transformers 5.17, no network); about
# 2.5 and 5.5 minutes expected, the limits of their steps add up to 4 and 8.5. Results land in $OUT:
# stage 1's 3 files, and stage 2's 5 with stage 1's again (8, the most a call returns); they belong
# in docs/data/gpu_check/.
#
#   stage 1  parks the payload's first part in $STASH (the machine stays warm 30 s after a call)
#            and runs what needs no real weights: the Triton kernel test, scripts/triton_prune_check.py
#            (docs/tensorrt.md) and scripts/gpu_bench.py over random weights of real Whisper sizes.
#   stage 2  joins tiny.en's weights (checked against their SHA-256), runs the CUDA tests, then
#            (a) scripts/gpu_compare.py: `trt-transcribe --device cuda` against transformers' Whisper
#                in FP16 (scripts/hf_transcribe.py) on the same GPU, same weights, same files, in turn,
#                whole processes: speech-dev's 4 long recordings and the short clips, sequential and
#                --batched, with WER and the paired 95% interval of ours minus the baseline;
#            (b) the service on one GPU: `whisper-eas serve --device cuda` driven by
#                scripts/bench_serve.py --url at 1, 16 and 64 closed-loop clients over the short clips
#                (audio seconds per second, p50/p95/p99, WER), the card named.
# The baseline is transformers, not faster-whisper: faster-whisper's CTranslate2 4.8 wheel needs
# CUDA 12's cuBLAS (libcublas.so.12), which that CUDA-13 image lacks and which (~500 MB) cannot
# travel in a 64 MiB call. faster-whisper is compared on the CPU (scripts/process_compare.py).
#
# Payload: `bash scripts/prepare_gpu_check.sh` on the CPU machine, in the checkout the device tool
# sends (it sizes each part to 64 MiB less that working tree). Device-tool calls, the second within
# 30 s of the first's end:  run(command="bash scripts/gpu_check.sh 1", carry=[".gpucheck/part1"], timeout_s=270)
#                           run(command="bash scripts/gpu_check.sh 2", carry=[".gpucheck/part2"], timeout_s=540)
# Dry run on the CPU machine (everything but CUDA; small subsets, longer timeouts):
#   DEVICE=cpu WHEELS=0 LIMIT=3 SCALE=4 STASH=/tmp/gc-stash OUT=/tmp/gc-out bash scripts/gpu_check.sh 1   (then 2)
set -uo pipefail
STAGE=${1:?usage: gpu_check.sh 1|2}
OUT=${OUT:-/tmp/gpucheck-out}
STASH=${STASH:-/root/stash/gpucheck}
PAYLOAD=${GPUCHECK:-.gpucheck}
DEVICE=${DEVICE:-cuda}   # cpu: the dry run
WHEELS=${WHEELS:-1}      # 0: use this Python's packages (the dry run)
LIMIT=${LIMIT:-}         # N: only the first N files of each set
SCALE=${SCALE:-1}        # multiplies every step's timeout
PY=${PY:-python3}
mkdir -p "$OUT" "$STASH"
LOG="$OUT/stage$STAGE.log"
export PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$STASH/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
cuda() { [ "$DEVICE" = cuda ]; }
step() {  # step NAME SECONDS COMMAND...: timed, limited, logged; a failure does not stop the stage
  local name=$1 seconds=$(( $2 * SCALE )) start=$SECONDS; shift 2
  echo "== $name (limit ${seconds} s)" | tee -a "$LOG"
  timeout -k 10 "$seconds" "$@" 2>&1 | grep --line-buffered -v -e "Warning" -e "warnings.warn" | tee -a "$LOG"
  echo "== $name: exit ${PIPESTATUS[0]} after $(( SECONDS - start )) s" | tee -a "$LOG"
}

if [ "$STAGE" = 1 ]; then
  : > "$LOG"
  cp -r "$PAYLOAD"/part1/. "$STASH"/ || { echo "no $PAYLOAD/part1: run scripts/prepare_gpu_check.sh, carry it"; exit 2; }
  { date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"
    $PY -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__,
'transformers', transformers.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"; } | tee -a "$LOG"
  if [ "$WHEELS" = 1 ]; then
    step wheels 45 $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$STASH/site" "$STASH"/whl/*.whl
  fi
  gunzip -kf "$STASH/model/tokenizer.json.gz"
  step "Triton kernel test" 60 $PY -m pytest -q -p no:cacheprovider tests/test_trt_plugin.py -k triton
  if cuda; then
    step "Triton prune check" 45 $PY scripts/triton_prune_check.py --out "$OUT/triton_prune.json"
    step "synthetic-weights benchmark" 90 $PY scripts/gpu_bench.py --tokenizer "$STASH/model/tokenizer.json" \
      --models tiny,base,large-v3-turbo --no-variants --out "$OUT/gpu_bench.json"
  else
    step "synthetic-weights benchmark" 120 $PY scripts/gpu_bench.py --tokenizer "$STASH/model/tokenizer.json" \
      --device cpu --models test --out "$OUT/gpu_bench.json"
  fi
  mkdir -p "$STASH/results" && cp "$OUT"/* "$STASH/results/"  # stage 2 hands them back again, with its own
  exit 0
fi

[ "$STAGE" = 2 ] || { echo "stage must be 1 or 2, got $STAGE"; exit 2; }
: > "$LOG"
[ -f "$STASH/model/weights.0" ] \
  || { echo "no $STASH/model/weights.0: run stage 1 (carry .gpucheck/part1) first, then this within 30 s"; exit 2; }
cp "$STASH"/results/* "$OUT"/ 2>/dev/null  # stage 1's files: one reply holds every result (8 files in all)
MODEL=/tmp/gpucheck-tiny.en
mkdir -p "$MODEL" && cp "$STASH"/model/*.json "$MODEL"/
cat "$STASH/model/weights.0" "$PAYLOAD/part2/weights.1" > "$MODEL/model.safetensors"
(cd "$MODEL" && sha256sum -c "$STASH/model/model.safetensors.sha256") | tee -a "$LOG" || exit 2
# the joined weights as the embedded tiny.en, for the tests and the CLI (a cache that has it keeps its own)
export WHISPER_EAS_HOME=${WHISPER_EAS_HOME:-/tmp/gpucheck-home}
[ -f "$WHISPER_EAS_HOME/models/tiny.en/model.safetensors" ] \
  || { mkdir -p "$WHISPER_EAS_HOME/models" && ln -sfn "$MODEL" "$WHISPER_EAS_HOME/models/tiny.en"; }
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
GPU=${GPU:-CPU (dry run)}
step "CUDA tests" 100 $PY -m pytest -q -p no:cacheprovider tests/test_static_graphs.py tests/test_trt_plugin.py \
  -k "cuda or triton"
step "trt-transcribe against transformers FP16" 240 $PY scripts/gpu_compare.py --device "$DEVICE" \
  --manifest "$STASH/long/manifest.tsv" --manifest "$PAYLOAD/part2/short/manifest.tsv" ${LIMIT:+--limit $LIMIT} \
  --mode sequential --mode batched --hf-model "$MODEL" --json "$OUT/gpu_compare.json" --markdown "$OUT/gpu_compare.md"
PORT=8765
$PY -m whisper_eas.cli.main serve --device "$DEVICE" --port $PORT --log-level warning >> "$LOG" 2>&1 &
SERVER=$!
step "service up" 60 $PY -c "import httpx, time
while True:
    try:
        if httpx.get('http://127.0.0.1:$PORT/health', timeout=1).status_code == 200: break
    except httpx.HTTPError: time.sleep(0.5)"
step "service under load" 100 $PY scripts/bench_serve.py --url http://127.0.0.1:$PORT --pid $SERVER \
  --label "whisper-eas serve --device $DEVICE" --device-name "$GPU" --manifest "$PAYLOAD/part2/short/manifest.tsv" \
  ${LIMIT:+--limit $((LIMIT * 4))} --clients 1,16,64 --out "$OUT/serve_gpu.json" --markdown "$OUT/serve_gpu.md"
kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null
ls -l "$OUT" | tee -a "$LOG"
