"""Decode a batch of 30 s windows on any runner, with language detection and the quality guard."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from whisper_eas.decoding import DecodingOptions, DecodingResult, decode_batch, detect_language
from whisper_eas.guard import GuardOptions, degenerate_reason
from whisper_eas.runners.base import EncodedBatch, Runner


@dataclass
class WindowResult:
    """A decoded window and what the encoder kept for it."""

    result: DecodingResult
    kept_frames: int  # encoder frames the decoder attended to
    n_frames: int  # encoder frames before pruning (1500)
    fallback: str | None = None  # why the guard re-ran it dense, if it did
    kept: list[int] | None = None  # which encoder frames were kept, in time order (None: all)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept_frames / self.n_frames


def _languages(runner: Runner, encoded: EncodedBatch, options: DecodingOptions) -> list[str | None]:
    if options.language is not None or not runner.tokenizer.multilingual:
        return [options.language or "en"] * encoded.batch
    detected = detect_language(lambda group: runner.decoder(encoded, group), encoded.batch, runner.tokenizer, runner.device)
    return [code for code, _ in detected]


def decode_encoded(
    runner: Runner, encoded: EncodedBatch, options: DecodingOptions, languages: list[str | None] | None = None
) -> list[DecodingResult]:
    """Decode already-encoded windows (one decoder session, `beam_size` rows per window)."""
    languages = languages or _languages(runner, encoded, options)
    session = runner.decoder(encoded, options.beam_size or 1)
    return decode_batch(session, encoded.batch, runner.tokenizer, options, languages, device=runner.device)


def decode_windows(
    runner: Runner,
    mel: torch.Tensor,
    options: DecodingOptions,
    guard: GuardOptions | None = None,
    encoded: EncodedBatch | None = None,
) -> list[WindowResult]:
    """Encode and decode windows mel [B, n_mels, 3000]; re-run degenerate sparse windows dense.
    `encoded`: `runner.encode(mel)` when the caller already has it (timing the encoder apart)."""
    guard = guard or GuardOptions()
    encoded = encoded if encoded is not None else runner.encode(mel)
    results = decode_encoded(runner, encoded, options)
    kept = encoded.kept.tolist() if encoded.kept is not None else [None] * encoded.batch
    out = [WindowResult(r, encoded.n_kept, encoded.n_frames, kept=k) for r, k in zip(results, kept)]
    if runner.prune is None or not guard.enabled:
        return out
    reasons = {i: degenerate_reason(r, guard) for i, r in enumerate(results)}
    redo = [i for i, reason in reasons.items() if reason]
    if not redo:
        return out
    dense = runner.encode(mel[redo], dense=True)
    for i, result in zip(redo, decode_encoded(runner, dense, options, [results[i].language for i in redo])):
        out[i] = WindowResult(result, dense.n_kept, dense.n_frames, fallback=reasons[i])
    return out
