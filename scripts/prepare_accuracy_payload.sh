#!/usr/bin/env bash
# Payload for scripts/accuracy_gpu.sh (issue 13: the accuracy protocol on a lent GPU). One tar of
# the soundfile wheels, speech-dev and speech-val (short utterances + the long recordings the full
# 30 s windows are cut from), the real tiny.en weights and then base's, cut into parts of 58 MB
# (one device call carries at most 64 MiB): .devrun/acc/part00..part04. The first three hold
# everything but base (tiny.en only); all five hold both models. Run on the CPU machine,
# repository root, in the venv:   bash scripts/prepare_accuracy_payload.sh
#   bash scripts/prepare_accuracy_payload.sh code   -> only .devrun/acc/code.tgz (the committed src/ and
#   scripts/ at HEAD: the GPU run uses these, not the working tree other helpers are editing)
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=.devrun/acc
mkdir -p "$OUT" && git archive --format=tar HEAD src scripts | gzip > "$OUT/code.tgz"
[ "${1:-}" = code ] && { ls -l "$OUT/code.tgz"; exit 0; }
STAGE=$(mktemp -d)
mkdir -p "$STAGE"/{whl,data,models}
copy_set() {  # copy_set SET MANIFEST...
  local set=$1; shift
  mkdir -p "$STAGE/data/$set/audio"
  cp "$DATA/$set/SOURCE.md" "$STAGE/data/$set/"
  for manifest in "$@"; do
    cp "$DATA/$set/$manifest" "$STAGE/data/$set/"
    tail -n +2 "$DATA/$set/$manifest" | cut -f2 | while read -r path; do cp "$DATA/$set/$path" "$STAGE/data/$set/audio/"; done
  done
}
copy_set speech-dev manifest-short.tsv manifest-long.tsv
copy_set speech-val manifest-short.tsv manifest-long.tsv
for model in tiny.en base; do
  src=$(python -c "from whisper_eas.checkpoints.registry import resolve_model; print(resolve_model('$model'))")
  mkdir -p "$STAGE/models/$model" && cp "$src"/*.json "$src"/model.safetensors "$STAGE/models/$model/"
done
pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d "$STAGE/whl" soundfile cffi pycparser 2>/dev/null
rm -f "$OUT"/part*
(cd "$STAGE" && tar cf - whl data models/tiny.en models/base) | split -b 58100000 -d -a 2 - "$OUT/part"
rm -rf "$STAGE"
ls -l "$OUT"
