#!/usr/bin/env bash
# The GPU long-form benchmark (scripts/gpu_longform.py) in two device calls, back to back (the
# machine is released after ~30 s idle, and the stash with it).
#   bash scripts/gpu_longform.sh prepare   # CPU machine, project venv: .devrun/speed1, .devrun/speed2
#   bash scripts/gpu_longform.sh stash     # GPU machine, carry [".devrun/speed1"]: parks half the weights
#   bash scripts/gpu_longform.sh run       # GPU machine, carry [".devrun/speed2"], right after: < 4 min
# One call carries at most 64 MiB and tiny.en's float16 safetensors alone are 75 MB, so the file
# travels in two halves (speed1: 38 MB; speed2: the other half, the configs and tokenizer, the
# eight long recordings of speech-dev and speech-val and soundfile's wheel, 61 MB).
set -euo pipefail
STASH=/root/stash-speed
if [ "${1:-}" = prepare ]; then
  rm -rf .devrun/speed1.tmp .devrun/speed2.tmp && mkdir -p .devrun/speed1.tmp .devrun/speed2.tmp/{tiny,long,whl}
  MODEL=$(python -c "from whisper_eas.checkpoints.registry import resolve_model; print(resolve_model('tiny.en'))")
  split -n 2 -d -a 2 "$MODEL/model.safetensors" .devrun/speed1.tmp/part
  mv .devrun/speed1.tmp/part01 .devrun/speed2.tmp/tiny/
  for f in config.json generation_config.json preprocessor_config.json tokenizer.json tokenizer_config.json; do
    [ -f "$MODEL/$f" ] && cp "$MODEL/$f" .devrun/speed2.tmp/tiny/
  done
  printf 'id\tpath\tduration_s\ttext\n' > .devrun/speed2.tmp/long/manifest.tsv
  for set in speech-dev speech-val; do
    tail -n +2 ../shared/data/$set/manifest-long.tsv | while IFS=$'\t' read -r id path dur text; do
      cp ../shared/data/$set/$path .devrun/speed2.tmp/long/
      printf '%s\t%s\t%s\t%s\n' "$id" "$(basename "$path")" "$dur" "$text" >> .devrun/speed2.tmp/long/manifest.tsv
    done
  done
  pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .devrun/speed2.tmp/whl soundfile cffi pycparser
  for d in speed1 speed2; do rm -rf .devrun/$d && mv .devrun/$d.tmp .devrun/$d; done
  du -sh .devrun/speed1 .devrun/speed2
  exit 0
fi
if [ "${1:-}" = stash ]; then
  mkdir -p $STASH && cp .devrun/speed1/part00 $STASH/ && ls -la $STASH
  exit 0
fi
[ -f $STASH/part00 ] || { echo "no $STASH/part00: run 'bash scripts/gpu_longform.sh stash' (carry .devrun/speed1) first, then this within 30 s"; exit 2; }
mkdir -p /tmp/tiny.en && cat $STASH/part00 .devrun/speed2/tiny/part01 > /tmp/tiny.en/model.safetensors
cp .devrun/speed2/tiny/*.json /tmp/tiny.en/
PAYLOAD=.devrun/speed2
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -c "import soundfile" 2>/dev/null || \
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$PAYLOAD"/whl/*.whl
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
timeout 280 python3 scripts/gpu_longform.py --model /tmp/tiny.en --manifest "$PAYLOAD/long/manifest.tsv" \
  --repeats 3 --batch-size 8 --out "$OUT/gpu_longform.json" 2>&1 | grep -v Warning
