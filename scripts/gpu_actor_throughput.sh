#!/usr/bin/env bash
# What one transcribe-dataset actor does on a GPU, measured without Ray (its wheel is larger than a
# device call can carry): the Transcriber on CUDA through trt-transcribe, over the 158 short dev
# files (0.25 h), dense and the shipped config, batch 16; once as one process (one actor per GPU),
# once as two processes sharing the GPU, each on half the files (--gpus-per-actor 0.5). Walls include
# process start, model loading and CUDA-graph captures, as an actor's first files do.
# Audio hours per GPU-hour = audio hours / wall hours. Feeds docs/scale-out.md.
# Payload as for scripts/gpu_session.sh: first `bash scripts/gpu_session.sh stash` carrying
# .devrun/w1 .devrun/short .devrun/whl, then this script carrying .devrun/w2, with PYTHONPATH=src.
set -uo pipefail
OUT=${OUT:-/tmp/out}
STASH=/root/stash
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $STASH/whl/*.whl
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1
mkdir -p /tmp/tiny.en && cat $STASH/w1/part00 .devrun/w2/part01 > /tmp/tiny.en/model.safetensors
cp .devrun/w2/*.json /tmp/tiny.en/
export WHISPER_EAS_HOME=/tmp/weh
mkdir -p $WHISPER_EAS_HOME/models && ln -sfn /tmp/tiny.en $WHISPER_EAS_HOME/models/tiny.en
AUDIO=$STASH/short/audio
mkdir -p /tmp/half0 /tmp/half1
n=0; for f in "$AUDIO"/*; do ln -sf "$f" /tmp/half$((n % 2))/; n=$((n + 1)); done
HOURS=$(python3 -c "import soundfile as sf, glob; print(sum(sf.info(f).duration for f in glob.glob('$AUDIO/*')) / 3600)")
transcribe() { python3 -c 'import sys; from whisper_eas.cli.transcribe_cmd import main; sys.argv[0] = "trt-transcribe"; main()' "$@"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for mode in dense shipped; do
  flag=; [ $mode = dense ] && flag=--dense
  start=$(date +%s.%N)
  timeout 120 transcribe "$AUDIO" --device cuda --batch-size 16 --output-dir /tmp/one_$mode $flag 2>&1 | tail -n 1
  one=$(python3 -c "import time; print(time.time() - $start)")
  start=$(date +%s.%N)
  for h in 0 1; do
    timeout 120 transcribe /tmp/half$h --device cuda --batch-size 16 --output-dir /tmp/two_${mode}_$h $flag \
      > /tmp/two_${mode}_$h.log 2>&1 &
  done
  wait
  two=$(python3 -c "import time; print(time.time() - $start)")
  tail -n 1 /tmp/two_${mode}_*.log
  python3 - "$mode" "$HOURS" "$one" "$two" <<'PY' | tee -a "$OUT/actor_throughput.txt"
import sys
mode, hours, one, two = sys.argv[1], *map(float, sys.argv[2:])
print(f"{mode}: {hours:.3f} h of audio; 1 process {one:.1f} s = {hours / (one / 3600):.0f} audio-h per GPU-h; "
      f"2 processes sharing the GPU {two:.1f} s = {hours / (two / 3600):.0f} audio-h per GPU-h")
PY
done
