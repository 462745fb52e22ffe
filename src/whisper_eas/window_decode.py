"""Decode a batch of long-form windows: sparse first, the guard's dense re-run, then hotter sampling.

Per window the order is openai/whisper's fallback with the quality guard slotted in before it:
1. greedy (or beam) decoding at temperature 0 on the sparsified encoder output;
2. a window the guard calls degenerate is encoded dense and decoded again at temperature 0;
3. while openai's rule still asks for a fallback, decode at the next temperature (sampling).

Each window's outcome depends only on that window, never on its batch neighbours: windows are
batched only with windows whose prompts have the same length, adaptive configs (whose kept-frame
count follows the batch) are encoded one window at a time, and sampling uses a per-window seed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import torch

from whisper_eas.decoding import N_TEXT_CTX, DecodingOptions, DecodingResult, decode_batch, detect_language
from whisper_eas.guard import GuardOptions, degenerate_reason
from whisper_eas.longform import LongformOptions, WindowOutcome, WindowRequest, needs_fallback
from whisper_eas.runners.base import EncodedBatch, Runner

MAX_PROMPT = N_TEXT_CTX // 2 - 1  # previous-text tokens kept by `initial_tokens`: longer prompts are cut


def decode_requests(
    runner: Runner,
    requests: list[WindowRequest],
    options: DecodingOptions,
    longform: LongformOptions,
    guard: GuardOptions,
) -> list[WindowOutcome]:
    """Decode windows (possibly from different files) and return one outcome per request, in order."""
    if not requests:
        return []
    if runner.prune is not None and runner.prune.adaptive and len(requests) > 1:
        return [decode_requests(runner, [r], options, longform, guard)[0] for r in requests]
    mel = torch.stack([r.mel for r in requests])
    encoded = runner.encode(mel)
    languages = _languages(runner, encoded, requests)
    greedy = replace(options, temperature=0.0)
    results = _decode_grouped(runner, encoded, requests, greedy, languages)
    outcomes = [WindowOutcome(r, encoded.n_kept, encoded.n_frames) for r in results]
    dense = _guard_rerun(runner, mel, requests, greedy, languages, outcomes, guard)
    for i, request in enumerate(requests):
        if needs_fallback(outcomes[i].result, longform) and len(longform.temperatures) > 1:
            source, row = dense.get(i, (encoded, i))
            outcomes[i].result = _sample_fallback(runner, source.select([row]), request, options, longform,
                                                  languages[i], outcomes[i].result)
    return outcomes


def _languages(runner: Runner, encoded: EncodedBatch, requests: list[WindowRequest]) -> list[str]:
    """The request's language, English for English-only models, else detected on this window."""
    if not runner.tokenizer.multilingual:
        return [r.language or "en" for r in requests]
    unknown = [i for i, r in enumerate(requests) if r.language is None]
    languages = [r.language for r in requests]
    if unknown:
        sub = encoded.select(unknown)
        detected = detect_language(lambda group: runner.decoder(sub, group), len(unknown), runner.tokenizer,
                                   runner.device)
        for i, (code, _) in zip(unknown, detected):
            languages[i] = code
    return languages  # type: ignore[return-value]


def _decode_grouped(
    runner: Runner, encoded: EncodedBatch, requests: list[WindowRequest], options: DecodingOptions, languages: list[str]
) -> list[DecodingResult]:
    """Decode rows in groups of equal prompt length (the decoder has no padding mask)."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, request in enumerate(requests):
        groups[min(len(request.prompt), MAX_PROMPT)].append(i)
    results: list[DecodingResult | None] = [None] * len(requests)
    for rows in groups.values():
        sub = encoded if len(rows) == encoded.batch else encoded.select(rows)
        session = runner.decoder(sub, options.beam_size or 1)
        decoded = decode_batch(session, len(rows), runner.tokenizer, options, [languages[i] for i in rows],
                               device=runner.device, previous=[requests[i].prompt for i in rows])
        for i, result in zip(rows, decoded):
            results[i] = result
    return results  # type: ignore[return-value]


def _guard_rerun(runner, mel, requests, options, languages, outcomes, guard) -> dict[int, tuple[EncodedBatch, int]]:
    """Re-run degenerate sparse windows dense; returns {request index: (dense encoding, its row)}."""
    if runner.prune is None or not guard.enabled:
        return {}
    reasons = {i: degenerate_reason(o.result, guard) for i, o in enumerate(outcomes)}
    redo = [i for i, reason in reasons.items() if reason]
    if not redo:
        return {}
    dense = runner.encode(mel[redo], dense=True)
    results = _decode_grouped(runner, dense, [requests[i] for i in redo], options, [languages[i] for i in redo])
    for row, (i, result) in enumerate(zip(redo, results)):
        outcomes[i] = WindowOutcome(result, dense.n_kept, dense.n_frames, fallback=reasons[i])
    return {i: (dense, row) for row, i in enumerate(redo)}


def _sample_fallback(runner, encoded, request, options, longform, language, result) -> DecodingResult:
    """Sample at rising temperatures until openai's rule is satisfied; the last try is kept."""
    for step, temperature in enumerate(longform.temperatures):
        if temperature == 0.0:
            continue
        hot = replace(options, temperature=temperature, beam_size=None, patience=None)
        generator = torch.Generator().manual_seed(request.seed * 31 + step)
        session = runner.decoder(encoded, 1)
        result = decode_batch(session, 1, runner.tokenizer, hot, [language], device=runner.device,
                              generator=generator, previous=[request.prompt])[0]
        if not needs_fallback(result, longform):
            break
    return result
