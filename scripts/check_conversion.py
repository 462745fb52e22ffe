"""Prove the CTranslate2 -> HF conversion: same features in, same greedy tokens out.

For each utterance of a manifest: (1) our log-mel features go into both the converted HF model
and CTranslate2 (float32, beam 1, no timestamps): greedy token sequences must be equal and the
encoder outputs close; (2) end to end, each library with its own feature extraction
(faster-whisper vs whisper-eas): the rate of identical texts.

    python scripts/check_conversion.py --model tiny.en --manifest ../shared/data/speech-dev/manifest-short.tsv --json out.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from whisper_eas.audio import load_audio
from whisper_eas.checkpoints.ct2_reference import CT2Reference
from whisper_eas.checkpoints.registry import embedded_ct2_dir
from whisper_eas.decoding import DecodingOptions, initial_tokens
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.features import window_features
from whisper_eas.runners.torch_runner import TorchRunner
from whisper_eas.window_decode import decode_encoded


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    from faster_whisper import WhisperModel

    utts = read_manifest(args.manifest, args.limit)
    runner = TorchRunner(args.model)
    options = DecodingOptions(language="en")
    with tempfile.TemporaryDirectory() as tmp:
        ct2_dir = embedded_ct2_dir(args.model, Path(tmp))
        ref = CT2Reference(ct2_dir)
        fw = WhisperModel(str(ct2_dir), device="cpu", compute_type="float32", cpu_threads=torch.get_num_threads())
        prompt = initial_tokens(runner.tokenizer, options, "en")
        rows, t0 = [], time.time()
        for first in range(0, len(utts), args.batch_size):
            batch = utts[first : first + args.batch_size]
            audio = [load_audio(u.path) for u in batch]
            mel = torch.stack([window_features(a, runner.n_mels) for a in audio])
            encoded = runner.encode(mel, dense=True)
            ours = decode_encoded(runner, encoded, options, ["en"] * len(batch))
            theirs = ref.greedy_tokens(mel, prompt)
            enc_diff = np.abs(encoded.hidden.numpy() - ref.encode(mel)).max(axis=(1, 2))
            for u, a, o, t, d in zip(batch, audio, ours, theirs, enc_diff):
                segments, _ = fw.transcribe(a, beam_size=1, temperature=0.0, without_timestamps=True,
                                            condition_on_previous_text=False, language="en", vad_filter=False)
                fw_text = " ".join(s.text.strip() for s in segments).strip()
                rows.append({"id": u.id, "tokens_equal": o.tokens == t, "encoder_max_abs_diff": float(d),
                             "ours": o.text, "ct2_text": runner.tokenizer.decode(t).strip(), "faster_whisper_e2e": fw_text,
                             "e2e_text_equal": fw_text == o.text})
            print(f"{len(rows)}/{len(utts)} tokens equal so far: {sum(r['tokens_equal'] for r in rows)}", flush=True)
    summary = {
        "model": args.model,
        "n": len(rows),
        "tokens_equal": sum(r["tokens_equal"] for r in rows),
        "encoder_max_abs_diff": max(r["encoder_max_abs_diff"] for r in rows),
        "e2e_text_equal": sum(r["e2e_text_equal"] for r in rows),
        "wall_s": time.time() - t0,
        "torch": torch.__version__,
    }
    Path(args.json).write_text(json.dumps({"summary": summary, "utterances": rows}, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
