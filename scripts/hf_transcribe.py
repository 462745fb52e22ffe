"""A plain Hugging Face transformers script: what a user of `WhisperForConditionalGeneration` runs.

The GPU check's baseline (scripts/gpu_check.sh): faster-whisper cannot run on the lent GPU machine
(its CTranslate2 wheel needs CUDA 12's cuBLAS, the machine has CUDA 13 only), so the peer on the
same GPU is transformers' own Whisper in FP16 on the same weights. Greedy, English:

* default (`trt-transcribe`'s counterpart): files up to 30 s are batched `--batch-size` at a time
  through `generate` (no timestamps, as transformers gives by default); longer files go one at a
  time through `generate`'s sequential long-form algorithm (timestamps, previous-text conditioning,
  temperature fallback on openai-whisper's thresholds), the algorithm `trt-transcribe` runs;
* `--batched` (`trt-transcribe --batched`'s counterpart): the `automatic-speech-recognition`
  pipeline with `chunk_length_s=30`, chunks of every file decoded `--batch-size` at a time, and
  `return_timestamps=True`, which transformers' docs advise for chunking (without it, overlapping
  chunks were joined with text lost: WER 29.7% against 8.3% on a 106 s dev recording, CPU).

Prints each file's text (`PATH<TAB>TEXT`, as scripts/fw_transcribe.py does). It imports nothing of
whisper-eas (that would charge our imports to the baseline): give it a Hugging Face checkpoint folder.

    python scripts/hf_transcribe.py DIR_OR_FILES... --model HF_DIR [--device cuda] [--batched]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

AUDIO = {".flac", ".wav", ".mp3", ".ogg", ".m4a"}
RATE = 16000
WINDOW = 30 * RATE
# openai-whisper's long-form fallback, in the names transformers' generate takes
LONG_FORM = {"condition_on_prev_tokens": True, "temperature": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
             "logprob_threshold": -1.0, "compression_ratio_threshold": 1.35, "no_speech_threshold": 0.6}


def load(path: Path):
    """Mono float32 at 16 kHz (the dev sets are 16 kHz already; anything else is refused)."""
    import soundfile

    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if rate != RATE:
        raise SystemExit(f"{path}: {rate} Hz; this baseline reads 16 kHz audio only")
    return audio.mean(axis=1)


def generate(model, processor, audios: list, long_form: bool, device: str) -> list[str]:
    """One `generate` call: a batch of clips up to 30 s, or one long recording (long-form)."""
    import torch

    kwargs = {"truncation": False, "padding": "longest", "return_attention_mask": True} if long_form else {}
    inputs = processor(audios, sampling_rate=RATE, return_tensors="pt", **kwargs)
    features = inputs.input_features.to(device, model.dtype)
    options = {"language": "en", "task": "transcribe"} if model.config.vocab_size >= 51865 else {}
    if long_form:
        options |= LONG_FORM | {"return_timestamps": True, "attention_mask": inputs.attention_mask.to(device)}
    with torch.inference_mode():
        ids = model.generate(features, **options)
    ids = ids["sequences"] if isinstance(ids, dict) else ids
    return [text.strip() for text in processor.batch_decode(ids, skip_special_tokens=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--model", required=True, help="a Hugging Face Whisper checkpoint folder")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default=None, help="float16 (default on CUDA) or float32 (default on a CPU)")
    ap.add_argument("--batched", action="store_true", help="the chunked pipeline (chunk_length_s=30)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor, pipeline
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    files = []
    for item in map(Path, args.inputs):
        files += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO) if item.is_dir() else [item]
    dtype = getattr(torch, args.dtype or ("float16" if args.device.startswith("cuda") else "float32"))
    model = WhisperForConditionalGeneration.from_pretrained(args.model, dtype=dtype).to(args.device).eval()
    processor = WhisperProcessor.from_pretrained(args.model)
    audios = [load(p) for p in files]
    texts: dict[Path, str] = {}
    if args.batched:
        asr = pipeline("automatic-speech-recognition", model=model, tokenizer=processor.tokenizer,
                       feature_extractor=processor.feature_extractor, device=args.device, dtype=dtype)
        results = asr([{"raw": a, "sampling_rate": RATE} for a in audios], chunk_length_s=30,
                      batch_size=args.batch_size, return_timestamps=True, generate_kwargs={"num_beams": 1})
        texts = {p: r["text"].strip() for p, r in zip(files, results)}
    else:
        short = [i for i, a in enumerate(audios) if len(a) <= WINDOW]
        for start in range(0, len(short), args.batch_size):
            batch = short[start:start + args.batch_size]
            texts |= dict(zip((files[i] for i in batch), generate(model, processor, [audios[i] for i in batch],
                                                                  False, args.device)))
        for i in (i for i, a in enumerate(audios) if len(a) > WINDOW):
            texts[files[i]] = generate(model, processor, [audios[i]], True, args.device)[0]
    for path in files:
        print(f"{path}\t{texts[path]}", flush=True)
    print(f"{len(files)} files", file=sys.stderr)


if __name__ == "__main__":
    main()
