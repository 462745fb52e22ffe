"""A plain faster-whisper int8 script: what a user would run instead of `trt-transcribe DIR`.

Transcribes every audio file of the folders or files given with `WhisperModel.transcribe`
(greedy, language English, no VAD: the same long-form algorithm as trt-transcribe's default),
printing each file's text. The counterpart of `trt-transcribe` in scripts/process_compare.py.

    python scripts/fw_transcribe.py DIR [--model tiny.en] [--compute-type int8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

AUDIO = {".flac", ".wav", ".mp3", ".ogg", ".m4a"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--model", default="tiny.en", help="embedded model name or a CTranslate2 folder")
    ap.add_argument("--compute-type", default="int8")
    args = ap.parse_args()
    from faster_whisper import WhisperModel

    files = []
    for item in map(Path, args.inputs):
        files += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO) if item.is_dir() else [item]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.model)
        if not folder.is_dir():  # the CT2 folder embedded in whisper-eas's model package
            from whisper_eas.checkpoints.registry import embedded_ct2_dir

            folder = embedded_ct2_dir(args.model, Path(scratch))
        model = WhisperModel(str(folder), device="cpu", compute_type=args.compute_type)
        for path in files:
            segments, _ = model.transcribe(str(path), beam_size=1, language="en", vad_filter=False)
            text = " ".join(s.text.strip() for s in segments)
            print(f"{path}: {text}", flush=True)
    print(f"{len(files)} files", file=sys.stderr)


if __name__ == "__main__":
    main()
