"""Prove a CTranslate2 -> Hugging Face conversion (`whisper-eas convert --check`).

The same log-mel features of real audio go into the converted checkpoint (PyTorch) and into the
CTranslate2 original (float32, beam 1, no timestamps): the greedy token sequences must be equal,
and the encoder outputs close. With faster-whisper installed, each library's own end-to-end
pipeline is compared too (the rate of identical texts; features differ slightly, so not all are).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from whisper_eas.audio import load_audio
from whisper_eas.checkpoints.ct2_reference import CT2Reference
from whisper_eas.decoding import DecodingOptions, initial_tokens
from whisper_eas.deps import installed
from whisper_eas.evaluation.manifest import Utterance
from whisper_eas.features import window_features
from whisper_eas.runners.torch_runner import TorchRunner
from whisper_eas.window_decode import decode_encoded


@dataclass
class ConversionCheck:
    """Per-utterance agreement of the converted checkpoint with CTranslate2, and the totals."""

    checkpoint: str
    ct2_dir: str
    rows: list[dict] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def tokens_equal(self) -> int:
        return sum(r["tokens_equal"] for r in self.rows)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and self.tokens_equal == len(self.rows)

    def summary(self) -> str:
        worst = max((r["encoder_max_abs_diff"] for r in self.rows), default=float("nan"))
        e2e = [r["e2e_text_equal"] for r in self.rows if r.get("e2e_text_equal") is not None]
        line = (f"greedy tokens equal on {self.tokens_equal} / {len(self.rows)} utterances; "
                f"encoder max abs diff {worst:.2e}")
        return line + (f"; end-to-end texts equal {sum(e2e)} / {len(e2e)} (faster-whisper)" if e2e else "")

    def to_dict(self) -> dict:
        return {**asdict(self), "tokens_equal": self.tokens_equal, "ok": self.ok, "torch": torch.__version__}


def check_conversion(checkpoint: str | Path, ct2_dir: str | Path, utterances: list[Utterance], batch_size: int = 8,
                     progress: Callable[[int, int], None] | None = None) -> ConversionCheck:
    """Compare `checkpoint` (converted from `ct2_dir`) with CTranslate2 on `utterances` (English)."""
    runner = TorchRunner(checkpoint)
    reference = CT2Reference(ct2_dir)
    options = DecodingOptions(language="en")
    prompt = initial_tokens(runner.tokenizer, options, "en")
    pipeline = _faster_whisper(ct2_dir)
    check, started = ConversionCheck(str(checkpoint), str(ct2_dir)), time.perf_counter()
    for first in range(0, len(utterances), batch_size):
        batch = utterances[first : first + batch_size]
        audio = [load_audio(u.path) for u in batch]
        mel = torch.from_numpy(np.stack([window_features(a, runner.n_mels) for a in audio]))
        encoded = runner.encode(mel, dense=True)
        ours = decode_encoded(runner, encoded, options, ["en"] * len(batch))
        theirs = reference.greedy_tokens(mel, prompt)
        diff = np.abs(encoded.hidden.numpy() - reference.encode(mel)).max(axis=(1, 2))
        for u, samples, o, t, d in zip(batch, audio, ours, theirs, diff):
            row = {"id": u.id, "tokens_equal": o.tokens == t, "encoder_max_abs_diff": float(d), "ours": o.text,
                   "ct2_text": runner.tokenizer.decode(t).strip()}
            if pipeline is not None:
                row["faster_whisper_e2e"] = pipeline(samples)
                row["e2e_text_equal"] = row["faster_whisper_e2e"] == o.text
            check.rows.append(row)
        if progress is not None:
            progress(len(check.rows), len(utterances))
    check.wall_s = time.perf_counter() - started
    return check


def _faster_whisper(ct2_dir: str | Path) -> Callable[[np.ndarray], str] | None:
    if not installed("faster_whisper"):
        return None
    from faster_whisper import WhisperModel

    model = WhisperModel(str(ct2_dir), device="cpu", compute_type="float32", cpu_threads=torch.get_num_threads())

    def transcribe(samples: np.ndarray) -> str:
        segments, _ = model.transcribe(samples, beam_size=1, temperature=0.0, without_timestamps=True,
                                       condition_on_previous_text=False, language="en", vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()

    return transcribe
