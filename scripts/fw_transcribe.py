"""A plain faster-whisper int8 script: what a user would run instead of `trt-transcribe`.

Transcribes every audio file of the folders or files given with `WhisperModel.transcribe`
(greedy, English, no VAD: the same long-form algorithm as trt-transcribe's default) or, with
`--batched`, faster-whisper's `BatchedInferencePipeline` (its Silero VAD chunks decoded
`--batch-size` at a time: the counterpart of `trt-transcribe --batched`), printing each file's
text. It imports nothing of whisper-eas (that would charge our imports to faster-whisper): give
it a CTranslate2 folder (scripts/process_compare.py extracts the embedded one once).

    python scripts/fw_transcribe.py DIR_OR_FILES... --model CT2_DIR [--batched]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

AUDIO = {".flac", ".wav", ".mp3", ".ogg", ".m4a"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--model", required=True, help="a CTranslate2 Whisper folder")
    ap.add_argument("--compute-type", default="int8")
    ap.add_argument("--batched", action="store_true", help="BatchedInferencePipeline")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    files = []
    for item in map(Path, args.inputs):
        files += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO) if item.is_dir() else [item]
    model = WhisperModel(args.model, device="cpu", compute_type=args.compute_type)
    pipeline = BatchedInferencePipeline(model) if args.batched else None
    for path in files:
        if pipeline is not None:
            segments, _ = pipeline.transcribe(str(path), beam_size=1, language="en", batch_size=args.batch_size)
        else:
            segments, _ = model.transcribe(str(path), beam_size=1, language="en", vad_filter=False)
        text = " ".join(s.text.strip() for s in segments)
        print(f"{path}\t{text}", flush=True)
    print(f"{len(files)} files", file=sys.stderr)


if __name__ == "__main__":
    main()
