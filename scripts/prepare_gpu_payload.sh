#!/usr/bin/env bash
# Build .devrun/, the payload that scripts/gpu_session.sh reads on a lent GPU machine (which has
# no network and no jiwer/soundfile): the real tiny.en weights in two halves (one device call
# carries at most 64 MiB), the short dev set and the full 30 s windows with manifests, and the
# wheels of soundfile and of what WER needs (jiwer, the Whisper normalizer). Run on the CPU machine from the repository root, in the project's venv.
#   bash scripts/prepare_gpu_payload.sh [../shared/data/speech-dev]
# Then, on the device tool: stage 1 carrying .devrun/w1 .devrun/short .devrun/whl
# (`bash scripts/gpu_session.sh 1`, which also parks them on the machine), and stage 2 carrying
# .devrun/w2 .devrun/full30 (`bash scripts/gpu_session.sh 2`), which scores on the GPU machine itself.
set -euo pipefail
DEV=${1:-../shared/data/speech-dev}
OUT=${DEVRUN:-.devrun}  # DEVRUN: another folder, e.g. to check this script
rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp"/{w1,w2,short/audio,whl}
MODEL=$(python -c "from whisper_eas.checkpoints.registry import resolve_model; print(resolve_model('tiny.en'))")
split -n 2 -d -a 2 "$MODEL/model.safetensors" "$OUT.tmp/part"
mv "$OUT.tmp/part00" "$OUT.tmp/w1/" && mv "$OUT.tmp/part01" "$OUT.tmp/w2/"
cp "$MODEL"/*.json "$OUT.tmp/w2/"
cp "$MODEL/tokenizer.json" "$OUT.tmp/w1/"  # stage 1's gpu_bench.py (random weights) needs only the tokenizer
cp "$DEV"/manifest-short.tsv "$OUT.tmp/short/manifest.tsv"
tail -n +2 "$DEV/manifest-short.tsv" | cut -f2 | while read -r path; do cp "$DEV/$path" "$OUT.tmp/short/audio/"; done
python scripts/make_full_windows.py --dev "$DEV" --out "$OUT.tmp/full30"
python - "$OUT.tmp/full30" <<'PY'  # FLAC: stage 2's carry (w2 + full30) must stay under 64 MiB
import pathlib, sys, soundfile
folder = pathlib.Path(sys.argv[1])
for wav in folder.glob("*.wav"):
    audio, rate = soundfile.read(wav)
    soundfile.write(wav.with_suffix(".flac"), audio, rate)
    wav.unlink()
manifest = folder / "manifest.tsv"
manifest.write_text(manifest.read_text().replace(".wav\t", ".flac\t"))
PY
pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d "$OUT.tmp/whl" soundfile cffi pycparser \
  jiwer rapidfuzz whisper-normalizer regex more-itertools text2num indic-numtowords
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
du -sh "$OUT"/*
