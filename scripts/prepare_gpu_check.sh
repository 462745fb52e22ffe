#!/usr/bin/env bash
# Build .gpucheck/ (ignored by git), the payload scripts/gpu_check.sh reads on a lent GPU machine,
# which has no network and lacks soundfile, jiwer, the Whisper normalizer, silero-vad and the
# service's FastAPI stack. One device call carries at most 64 MiB, the git working tree included,
# and tiny.en's FP16 weights alone are 75 MB, so the payload travels in two parts, each filled up
# to that limit less the tree (and 1 MiB of slack):
#   part1 (stage 1): the wheels, tiny.en's configs and gzipped tokenizer, speech-dev's 4 long
#                    recordings, and the weights' first bytes;
#   part2 (stage 2): the rest of the weights, and as many of speech-dev's short clips as fit
#                    (every other clip first, so that every source is in; then the others).
# Run on the CPU machine from the repository root, in the project's venv:
#   bash scripts/prepare_gpu_check.sh [SPEECH_DEV_DIR]     (GPUCHECK=DIR: another output folder)
set -euo pipefail
DEV=${1:-../shared/data/speech-dev}
OUT=${GPUCHECK:-.gpucheck}
TREE=$( { git ls-files -z; git ls-files -z -o --exclude-standard; } | du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)
BUDGET=$(( 64 * 1048576 - TREE - 1048576 ))
rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp"/part1/{whl,model,long/audio} "$OUT.tmp"/part2/short/audio
# Wheels for Python 3.12 there (the versions this project's venv runs); torch, transformers,
# onnxruntime, onnx, httpx, psutil, anyio, click, h11, uvloop, prometheus-client are there already.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$OUT.tmp/part1/whl" \
  soundfile==0.14.0 cffi==2.0.0 pycparser==3.0 jiwer==4.0.0 rapidfuzz==3.14.6 whisper-normalizer==0.1.15 \
  more-itertools==11.2.1 text2num==3.1.0 indic-numtowords==1.1.0 silero-vad==6.2.3 \
  fastapi==0.165.0 starlette==1.10.0 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 \
  typing-inspection==0.4.2 opentelemetry-api==1.45.2 uvicorn==0.55.0 python-multipart==0.0.34 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
MODEL=$(python -c "from whisper_eas.checkpoints.registry import resolve_model; print(resolve_model('tiny.en'))")
python - "$OUT.tmp" "$MODEL" "$DEV" "$BUDGET" <<'PY'
import gzip, hashlib, pathlib, shutil, sys, zipfile

out, model, dev, budget = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), int(sys.argv[4])
p1, p2 = out / "part1", out / "part2"
# silero-vad: only the model vad.py loads (the wheel's 8 others are 10 MB)
wheel = next((p1 / "whl").glob("silero_vad-*.whl"))
keep = lambda name: "/data/" not in name or name.endswith(("silero_vad_16k_sequence.onnx", "__init__.py"))
with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(wheel.with_suffix(".tmp"), "w", zipfile.ZIP_DEFLATED) as dst:
    for item in filter(lambda i: keep(i.filename), src.infolist()):
        data = src.read(item)
        if item.filename.endswith("RECORD"):
            data = b"".join(line for line in data.splitlines(True) if keep(line.split(b",")[0].decode()))
        dst.writestr(item, data)
wheel.with_suffix(".tmp").replace(wheel)
for f in model.glob("*.json"):
    if f.name == "tokenizer.json":
        (p1 / "model/tokenizer.json.gz").write_bytes(gzip.compress(f.read_bytes(), 9))
    else:
        shutil.copy(f, p1 / "model")

def copy_set(manifest: pathlib.Path, folder: pathlib.Path, rows: list[list[str]]) -> None:
    lines = [manifest.read_text().splitlines()[0]]
    for row in rows:
        shutil.copy(dev / row[1], folder / "audio")
        lines.append("\t".join([row[0], "audio/" + pathlib.Path(row[1]).name, *row[2:]]))
    (folder / "manifest.tsv").write_text("\n".join(lines) + "\n")

def size(folder: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

rows = lambda name: [line.split("\t") for line in (dev / name).read_text().splitlines()[1:] if line.strip()]
copy_set(dev / "manifest-long.tsv", p1 / "long", rows("manifest-long.tsv"))
weights = (model / "model.safetensors").read_bytes()
(p1 / "model/model.safetensors.sha256").write_text(f"{hashlib.sha256(weights).hexdigest()}  model.safetensors\n")
head = budget - size(p1)
(p1 / "model/weights.0").write_bytes(weights[:head])
(p2 / "weights.1").write_bytes(weights[head:])
room = budget - size(p2) - 65536  # the manifest written after
short = rows("manifest-short.tsv")
chosen = []
for i in list(range(0, len(short), 2)) + list(range(1, len(short), 2)):
    clip = (dev / short[i][1]).stat().st_size
    if clip <= room:
        chosen.append(i)
        room -= clip
copy_set(dev / "manifest-short.tsv", p2 / "short", [short[i] for i in sorted(chosen)])
seconds = sum(float(short[i][2]) for i in chosen)
print(f"short clips: {len(chosen)} of {len(short)} ({seconds:.0f} s of audio); weights split at {head} bytes")
PY
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "git working tree $TREE bytes; budget per part $BUDGET bytes (64 MiB less the tree and 1 MiB)"
for part in part1 part2; do
  bytes=$(find "$OUT/$part" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
  echo "$OUT/$part: $bytes bytes, with the tree $(( (bytes + TREE) / 1048576 )) MiB of 64"
  [ "$bytes" -le "$BUDGET" ] || { echo "$OUT/$part is over budget"; exit 1; }
done
