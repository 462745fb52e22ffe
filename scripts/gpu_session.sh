#!/usr/bin/env bash
# The lent-GPU measurements behind docs/benchmarks.md and docs/results.md, in two stages because
# one call may carry at most 64 MiB (the tiny.en weights alone are 75 MB, so they travel in two
# halves). Run from the repository root on the GPU machine, with PYTHONPATH=src.
#   stage 1: synthetic-dims benchmark (random weights, real Whisper dimensions), FP16 and float32 head
#   stage 2: real tiny.en: the CUDA tests, `whisper-eas eval --device cuda` of the dev set per config and
#            head precision, trt-transcribe --device cuda dense and shipped; stages research/research2:
#            strategy grids (`whisper-eas search --no-latency` over two named manifests)
# Payload (prepared on the CPU machine, ignored by git): .devrun/{w1,w2,short,full30,whl}.
set -uo pipefail
stage=$1
OUT=${OUT:-/tmp/out}
STASH=/root/stash
mkdir -p "$OUT" "$STASH"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devrun/whl/*.whl 2>/dev/null \
  || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $STASH/whl/*.whl
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm --format=csv
if [ "$stage" = stash ]; then  # only park the first half of the payload for stage 2
  cp -r .devrun/w1 .devrun/short .devrun/whl "$STASH"/
  exit 0
fi
if [ "$stage" = 1 ]; then
  cp -r .devrun/w1 .devrun/short .devrun/whl "$STASH"/  # first: stage 2 needs them even if the bench fails
  # the targets' configs and tiny.en's shipped one at every size, each with the FP16, TF32 and float32 head
  # the product's CUDA-graph runner over random weights needs tiny.en's tokenizer.json (w1 or w2 carries it)
  TOK=$(ls .devrun/w1/tokenizer.json .devrun/w2/tokenizer.json $STASH/w1/tokenizer.json 2>/dev/null | head -n 1)
  timeout 200 python3 scripts/gpu_bench.py --tokenizer "$TOK" --models large-v3-turbo,large-v3,small,base,tiny --no-variants \
    --extra "coverage@4+merge L1 k0.5" --heads float32,tf32 --out "$OUT/bench.json" 2>&1 | grep -v Warning | cut -c1-160
  exit 0
fi
# stage 2 (and stage research2: a finer grid around the winner of stage 2)
W1=.devrun/w1/part00; [ -f $W1 ] || W1=$STASH/w1/part00
SHORT=.devrun/short; [ -d $SHORT ] || SHORT=$STASH/short
mkdir -p /tmp/tiny.en && cat $W1 .devrun/w2/part01 > /tmp/tiny.en/model.safetensors && cp .devrun/w2/*.json /tmp/tiny.en/
search() {  # WER-only strategy grid over both manifests (whisper-eas search --no-latency)
  timeout "$1" python3 -m whisper_eas.cli.main search --model /tmp/tiny.en --manifest full=.devrun/full30/manifest.tsv \
    --manifest short=$SHORT/manifest.tsv --device cuda --no-latency "${@:3}" --out "$OUT/$2" 2>&1 | tail -n 4
}
if [ "$stage" = research2 ]; then
  search 150 research2 --layers 1,2 --keep-ratios 0.5,0.4,0.35,0.3,0.25 \
    --strategies coverage+merge,coverage@4+merge,coverage@8+merge,coverage@16+merge
  for lo in 0.2 0.3; do
    search 60 research2_adaptive_$lo --layers 1,2 --strategies coverage@8+merge --keep-ratios 0.5 \
      --masses 0.95,0.98 --min-keep $lo --max-keep 0.6
  done
  exit 0
fi
export WHISPER_EAS_HOME=/tmp/weh  # the assembled weights as the embedded tiny.en, for the tests and the CLI
mkdir -p $WHISPER_EAS_HOME/models && ln -sfn /tmp/tiny.en $WHISPER_EAS_HOME/models/tiny.en
if [ "$stage" = 2 ] || [ "$stage" = tests ]; then  # tests: only the CUDA tests (after `stash`)
  set -o pipefail
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_static_graphs.py tests/test_trt_plugin.py \
    -k "cuda or triton" 2>&1 | tee "$OUT/pytest_cuda.log" | tail -n 6
  [ "$stage" = tests ] && exit 0
  # accuracy on the GPU: whisper-eas eval (the Transcriber users run) per config and encoder-head precision
  for head in model tf32 float32; do
    for prune in dense "coverage@4+merge L1 k0.5" "coverage@8 L1 k0.5" "coverage@8 L1 k0.4" "attentive L1 k0.5"; do
      [ "$prune" = dense ] && [ $head != model ] && continue
      name=$(echo "$prune" | tr ' @+' '_--')
      timeout 60 python3 -m whisper_eas.cli.main eval --model tiny.en --manifest $SHORT/manifest.tsv --device cuda \
        --head-precision $head --prune "$prune" --batch-size 16 --json "$OUT/gpu_eval_${head}_$name.json" 2>&1 | tail -n 1
    done
  done
  # the user's path: trt-transcribe on CUDA (CUDA-graph runner), dense and the shipped config
  for mode in dense shipped; do
    flag=; [ $mode = dense ] && flag=--dense
    timeout 60 python3 -c 'import sys; from whisper_eas.cli.transcribe_cmd import main; sys.argv[0] = "trt-transcribe"; main()' \
      $SHORT/audio --device cuda --batch-size 16 --format json --output-dir /tmp/cli_$mode $flag 2>&1 | tail -n 2
  done
  tar czf "$OUT/cli_json.tgz" -C /tmp cli_dense cli_shipped
  exit 0
fi
# stage research: the strategy grid on the real tiny.en (needs .devrun/full30)
search 200 research --layers 1,2,3 --keep-ratios 0.7,0.6,0.5,0.4,0.3,0.2 \
  --strategies attentive,attentive@8,uniform,truncate,coverage,coverage@8,coverage+merge,uniform+merge,attentive+merge
search 60 research_noself --layers 1,2,3 --keep-ratios 0.7,0.6,0.5,0.4,0.3,0.2 --strategies attentive --scoring mean_noself
search 80 research_adaptive --layers 1,2 --strategies coverage,coverage+merge --keep-ratios 0.5 --masses 0.9,0.95
