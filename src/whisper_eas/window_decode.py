"""The one window-decoding pipeline: every path from log-mel windows to text goes through it.

`decode_windows` decodes a batch of 30 s windows (possibly from different files) and is used by
the Transcriber (long-form, batched across files), `eval` (through the Transcriber), `bench`, the
search's latency phase and its WER grid (which brings its own shared-prefix encoding). Short-form
decoding is long-form with one window, no previous text and one temperature (`SHORT_FORM`).

Per window, in order:
1. language: the request's (fixed by the user or by an earlier window of the file), English for
   English-only models, else detected; on a pruned encoding a detection whose top probability is
   below `GuardOptions.language_min_prob` is redone on the dense encoding, so pruning does not
   change the language a confident dense model would pick; a file's first window still at or below
   `LongformOptions.language_detection_threshold` is decided over its next windows (`vote_language`);
2. greedy (or beam) decoding at temperature 0 on the (sparsified) encoder output; where hotter
   tries follow, a row stuck repeating is ended early (`repetition.py`), as in steps 3 and 4;
3. a window the guard calls degenerate is decoded again as a clean decode, temperature 0: dense
   encoder (language re-detected on it unless it was fixed) where the runner prunes, the exact
   decoder step where the runner's step is approximate (int8 layers, `Runner.approximate_decoder`);
4. while openai/whisper's rule still asks for a fallback, decode at the next temperature
   (sampling), on the clean encoding and step if step 3 ran.

Each window's outcome depends only on that window, never on its batch neighbours: rows are
decoded in groups of equal prompt length, per-input configs (adaptive mass, dropped padding:
kept counts differ per window) are encoded one window at a time and decoded in groups of equal kept
count, and sampling uses a per-window seed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from functools import partial
from typing import Callable, Iterable, Sequence

import numpy as np

from whisper_eas.decoding import N_TEXT_CTX, DecodingOptions, DecodingResult, decode_batch, detect_language
from whisper_eas.features import N_FRAMES, content_frames
from whisper_eas.guard import GuardOptions, degenerate_reason
from whisper_eas.longform import LongformOptions, WindowOutcome, WindowRequest, needs_fallback
from whisper_eas.repetition import RepetitionCut
from whisper_eas.runners.base import DenseView, EncodedBatch, Runner

MAX_PROMPT = N_TEXT_CTX // 2 - 1  # previous-text tokens kept by `initial_tokens`: longer prompts are cut
SHORT_FORM = LongformOptions(temperatures=(0.0,))  # one window, one temperature: eval-free timing, search

DenseEncoder = Callable[[list[int]], EncodedBatch]  # request rows -> their dense encoding, in that order


def window_requests(mel: np.ndarray, options: DecodingOptions) -> list[WindowRequest]:
    """Independent windows mel [B, n_mels, 3000] as requests: no previous text beyond
    `options.prompt`, the options' language (None: detect), seeds by position."""
    prompt = tuple(options.prompt or ())
    return [WindowRequest(mel[i], prompt, options.language, seed=i) for i in range(mel.shape[0])]


def decode_windows(
    runner: Runner,
    requests: Sequence[WindowRequest],
    options: DecodingOptions,
    longform: LongformOptions = SHORT_FORM,
    guard: GuardOptions | None = None,
    *,
    encoded: EncodedBatch | None = None,
    encode_dense: DenseEncoder | None = None,
) -> list[WindowOutcome]:
    """Decode windows and return one outcome per request, in order.

    `encoded`: the requests' encoding when the caller already has it (timing the encoder apart,
    the search's shared prefix); `encode_dense`: how to get dense encodings of some rows (default:
    `runner.encode(mel[rows], dense=True)` when the runner prunes; None with a dense runner, whose
    own encoding is already dense).
    """
    guard = guard or GuardOptions()
    if not requests:
        return []
    if encoded is None and runner.prune is not None and runner.prune.scope == "whole" and \
            not all(r.whole_file for r in requests):
        return _decode_scoped(runner, requests, options, longform, guard)
    if encoded is None and runner.prune is not None and runner.prune.per_input and len(requests) > 1:
        return _decode_by_count(runner, requests, options, longform, guard)
    if encoded is None:
        encoded = runner.encode(np.stack([r.mel for r in requests]))
    if encode_dense is None and runner.prune is not None:
        encode_dense = lambda rows: runner.encode(np.stack([requests[i].mel for i in rows]), dense=True)  # noqa: E731
    dense = _DenseCache(encode_dense)
    languages, probs = _languages(runner, encoded, requests, dense, guard, longform)
    requests = [_own_language_prompt(r, code) for r, code in zip(requests, languages)]
    greedy = replace(options, temperature=0.0)
    cut = repetition_cut(longform)
    results = _decode_grouped(runner, encoded, requests, greedy, languages, cut)
    kept = encoded.kept.tolist() if encoded.kept is not None else [None] * len(requests)
    outcomes = [WindowOutcome(r, _n_kept(encoded, i), encoded.n_frames, kept=_real(k, encoded, i),
                              language_prob=probs[i]) for i, (r, k) in enumerate(zip(results, kept))]
    rerun = _guard_rerun(runner, encoded, requests, greedy, languages, outcomes, guard, dense, cut, longform)
    if len(longform.temperatures) > 1:
        _sample_fallbacks(runner, encoded, dense, requests, options, longform, languages, outcomes, rerun, cut)
    return outcomes


def _decode_scoped(runner: Runner, requests: Sequence[WindowRequest], options: DecodingOptions,
                   longform: LongformOptions, guard: GuardOptions) -> list[WindowOutcome]:
    """scope="whole": windows that hold a whole input decode with the runner's config, the windows
    of longer recordings as a dense runner decodes them (its dense encoder; the guard re-runs
    nothing for the encoder's sake, as it would not for a dense model)."""
    outcomes: list[WindowOutcome | None] = [None] * len(requests)
    whole = [i for i, r in enumerate(requests) if r.whole_file]
    rest = [i for i, r in enumerate(requests) if not r.whole_file]
    for rows, view in ((whole, runner), (rest, DenseView(runner))):
        if rows:
            decoded = decode_windows(view, [requests[i] for i in rows], options, longform, guard)
            for i, outcome in zip(rows, decoded):
                outcomes[i] = outcome
    return outcomes  # type: ignore[return-value]


def _own_language_prompt(request: WindowRequest, language: str) -> WindowRequest:
    """A window detected in another language than the previous text is not prompted with that
    text: prompted in English, base decodes German audio as an English translation."""
    if request.prompt_language is None or request.prompt_language == language or not request.previous:
        return request
    return replace(request, prompt=request.prompt[: len(request.prompt) - request.previous], previous=0)


def repetition_cut(longform: LongformOptions) -> RepetitionCut | None:
    """Cut looping decodes only where a hotter try follows (`repetition.py`): single-temperature
    decodes (the search's grid, short-form timing) keep openai's full-length loops."""
    threshold = longform.compression_ratio_threshold
    if len(longform.temperatures) < 2 or threshold is None:
        return None
    return RepetitionCut(threshold)


def _decode_by_count(runner: Runner, requests: Sequence[WindowRequest], options: DecodingOptions,
                     longform: LongformOptions, guard: GuardOptions) -> list[WindowOutcome]:
    """Per-input configs: each window encoded alone (its kept count depends on it alone), then the
    windows that kept the same number of frames decoded together (graph decoders take one count per
    batch; a padding trim keeps all 1500 frames of every full window of a long recording)."""
    parts = [runner.encode(r.mel[None]) for r in requests]
    groups: dict[int, list[int]] = defaultdict(list)
    for i, part in enumerate(parts):
        groups[part.n_kept if part.frame_mask is None else -1 - i].append(i)
    outcomes: list[WindowOutcome | None] = [None] * len(requests)
    for rows in groups.values():
        encoded = EncodedBatch.concat([parts[i] for i in rows])
        for i, outcome in zip(rows, decode_windows(runner, [requests[i] for i in rows], options, longform, guard,
                                                    encoded=encoded)):
            outcomes[i] = outcome
    return outcomes


def decode_encoded(
    runner: Runner, encoded: EncodedBatch, options: DecodingOptions, languages: Sequence[str | None] | None = None
) -> list[DecodingResult]:
    """Decode already-encoded windows once, no guard and no fallback: the building block the
    pipeline and the runners' parity tests share. `languages`: per window (default: the options'
    language, English for English-only models, else detected on `encoded`)."""
    if languages is None:
        if options.language is not None or not runner.tokenizer.multilingual:
            languages = [options.language or "en"] * encoded.batch
        else:
            languages = [code for code, _ in _detect(runner, encoded)]
    session = runner.decoder(encoded, options.beam_size or 1)
    return decode_batch(session, encoded.batch, runner.tokenizer, options, list(languages))


class _DenseCache:
    """Dense encodings of single rows, computed at most once per call (language fall-back, guard)."""

    def __init__(self, encode: DenseEncoder | None):
        self.encode = encode
        self.rows: dict[int, EncodedBatch] = {}

    @property
    def available(self) -> bool:
        return self.encode is not None

    def get(self, rows: list[int]) -> EncodedBatch:
        missing = [i for i in rows if i not in self.rows]
        if missing:
            fresh = self.encode(missing)  # type: ignore[misc]
            for j, i in enumerate(missing):
                self.rows[i] = fresh.select([j])
            if missing == rows:
                return fresh
        return EncodedBatch.concat([self.rows[i] for i in rows])


def _n_kept(encoded: EncodedBatch, row: int) -> int:
    """Real (unpadded) frames of one row."""
    if encoded.frame_mask is None:
        return encoded.n_kept
    return int(encoded.frame_mask[row].sum())


def _real(kept: list[int] | None, encoded: EncodedBatch, row: int) -> list[int] | None:
    return None if kept is None else kept[: _n_kept(encoded, row)]


def _detect(runner: Runner, encoded: EncodedBatch) -> list[tuple[str, dict]]:
    return detect_language(lambda group: runner.decoder(encoded, group), encoded.batch, runner.tokenizer)


def _languages(runner: Runner, encoded: EncodedBatch, requests: Sequence[WindowRequest], dense: _DenseCache,
               guard: GuardOptions, longform: LongformOptions) -> tuple[list[str], list[float | None]]:
    """Each request's language and, where it was detected here, the top language's probability.
    The same rule as `detect_window_language`, then `vote_language` where the window is unsure."""
    languages = [r.language for r in requests]
    probs: list[float | None] = [None] * len(requests)
    if not runner.tokenizer.multilingual:
        return [code or "en" for code in languages], probs  # type: ignore[misc]
    unknown = [i for i, code in enumerate(languages) if code is None]
    if not unknown:
        return languages, probs  # type: ignore[return-value]
    for i, (code, values) in zip(unknown, _detect(runner, encoded.select(unknown))):
        languages[i], probs[i] = code, values[code]
    unsure = [i for i in unknown if dense.available and probs[i] < guard.language_min_prob]  # type: ignore[operator]
    if unsure:
        for i, (code, values) in zip(unsure, _detect(runner, dense.get(unsure))):
            languages[i], probs[i] = code, values[code]
    for i in unknown:
        languages[i], probs[i] = _unless_unsure(runner, requests[i], languages[i], probs[i],  # type: ignore[arg-type]
                                                guard, longform)
    return languages, probs  # type: ignore[return-value]


def _unless_unsure(runner: Runner, request: WindowRequest, code: str, prob: float, guard: GuardOptions,
                   longform: LongformOptions) -> tuple[str, float]:
    """The window's detected language, or the vote over the file's next windows where it is unsure."""
    if request.later_windows is None or prob > longform.language_detection_threshold:
        return code, prob
    return vote_language(runner, (code, prob), request.later_windows(), guard, longform)


def first_window_language(runner: Runner, request: WindowRequest, guard: GuardOptions,
                          longform: LongformOptions) -> tuple[str, float, dict[str, float]]:
    """A file's language as decoding detects it from its first window (`Transcriber.detect_language`):
    (language, its probability, every language's probability on the first window)."""
    code, values = detect_window_language(runner, request.mel, guard)
    code, prob = _unless_unsure(runner, request, code, values[code], guard, longform)
    return code, prob, values


def detect_window_language(runner: Runner, mel: np.ndarray, guard: GuardOptions) -> tuple[str, dict[str, float]]:
    """(top language, every language's probability) of one window [n_mels, 3000], as the pipeline
    detects a file's first window: on the runner's encoding, again dense where that is unsure."""
    code, values = _detect(runner, runner.encode(mel[None]))[0]
    if runner.prune is not None and values[code] < guard.language_min_prob:
        code, values = _detect(runner, runner.encode(mel[None], dense=True))[0]
    return code, values


def vote_language(runner: Runner, first: tuple[str, float], later: Iterable[np.ndarray], guard: GuardOptions,
                  longform: LongformOptions) -> tuple[str, float]:
    """faster-whisper's rule for an unsure first window (`first`: its language and probability): the
    first later window detected above `language_detection_threshold` decides; if none is, the
    language most windows detected, with its highest probability. A non-native English recording
    that base hears as Latin (p 0.41) from its first 30 s is heard as English over more."""
    seen: dict[str, list[float]] = {first[0]: [first[1]]}
    for mel in later:
        code, values = detect_window_language(runner, mel, guard)
        if values[code] > longform.language_detection_threshold:
            return code, values[code]
        seen.setdefault(code, []).append(values[code])
    code = max(seen, key=lambda c: len(seen[c]))  # ties: the earliest window's language
    return code, max(seen[code])


def _decode_grouped(runner: Runner, encoded: EncodedBatch, requests: Sequence[WindowRequest],
                    options: DecodingOptions, languages: list[str],
                    cut: RepetitionCut | None = None, exact: bool = False) -> list[DecodingResult]:
    """Decode rows in groups of equal prompt shape (`_prompt_groups`); `exact`: with the runner's
    exact decoder step."""
    results: list[DecodingResult | None] = [None] * len(requests)
    for rows in _prompt_groups(requests, range(len(requests))):
        sub = encoded if len(rows) == encoded.batch else encoded.select(rows)
        session = (runner.exact_decoder if exact else runner.decoder)(sub, options.beam_size or 1)
        decoded = decode_batch(session, len(rows), runner.tokenizer, options, [languages[i] for i in rows],
                               previous=[requests[i].prompt for i in rows],
                               prefixes=[requests[i].prefix for i in rows], cut=cut)
        for i, result in zip(rows, decoded):
            results[i] = result
    return results  # type: ignore[return-value]


def _prompt_groups(requests: Sequence[WindowRequest], rows: Iterable[int]) -> list[list[int]]:
    """`rows` grouped by prompt shape (kept previous-text length, prefix length): the decoder has
    no padding mask, so the rows of one decode need prompts of equal length."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in rows:
        groups[min(len(requests[i].prompt), MAX_PROMPT), len(requests[i].prefix)].append(i)
    return list(groups.values())


def _guard_rerun(runner, encoded: EncodedBatch, requests, options, languages, outcomes, guard, dense: _DenseCache,
                 cut: RepetitionCut | None = None, longform: LongformOptions = SHORT_FORM) -> set[int]:
    """Re-run degenerate windows as clean decodes (dense encoder where the runner prunes, exact step
    where its step is approximate); returns the rows re-run."""
    exact = runner.approximate_decoder
    if not (dense.available or exact) or not guard.enabled:
        return set()
    # fewer encoder frames of audio than a full window (1500): the file's audio ends in this window
    audio_ends = (content_frames(np.stack([r.mel for r in requests])) < N_FRAMES // 2).tolist()
    reasons = {i: degenerate_reason(o.result, guard, partial(runner.tokenizer.decode, list(requests[i].prompt)),
                                    timestamp_begin=runner.tokenizer.timestamp_begin, audio_ends=audio_ends[i])
               for i, o in enumerate(outcomes)}
    redo = [i for i, reason in reasons.items() if reason]
    if not redo:
        return set()
    encoded = dense.get(redo) if dense.available else encoded.select(redo)
    redo_languages = [languages[i] for i in redo]
    probs: list[float | None] = [outcomes[i].language_prob for i in redo]
    detect = [j for j, i in enumerate(redo)
              if dense.available and requests[i].language is None and runner.tokenizer.multilingual]
    if detect:
        for j, (code, values) in zip(detect, _detect(runner, encoded.select(detect))):
            redo_languages[j], probs[j] = _unless_unsure(runner, requests[redo[j]], code, values[code], guard,
                                                         longform)
    results = _decode_grouped(runner, encoded, [requests[i] for i in redo], options, redo_languages, cut, exact)
    for j, (i, result) in enumerate(zip(redo, results)):
        outcomes[i] = WindowOutcome(result, encoded.n_kept, encoded.n_frames, fallback=reasons[i],
                                    language_prob=probs[j], unguarded=outcomes[i])
    return set(redo)


def _sample_fallbacks(runner: Runner, encoded: EncodedBatch, dense: _DenseCache, requests: Sequence[WindowRequest],
                      options: DecodingOptions, longform: LongformOptions, languages: list[str],
                      outcomes: list[WindowOutcome], rerun: set[int], cut: RepetitionCut | None) -> None:
    """openai/whisper's fallback, in place: while a window's result still asks for it, sample it
    at the next temperature; the last try is kept.

    The windows that fall back are sampled together (per kind of step and prompt shape), so one
    failing window no longer costs its batch a sequential decode per try. A decode holds at most
    as many rows as the greedy pass did, or one window's `best_of` rows (each row holds its own
    copy of the window's cross keys/values): with best_of=5 in a batch of 8, one window at a
    time, as before; with one sample per try (the batched mode), all of them at once. Each window
    keeps its own seeded generator, so its samples are the same alone or beside others. A window
    the guard re-ran samples on its clean encoding with the exact step."""
    pending = [i for i in range(len(requests)) if needs_fallback(outcomes[i].result, longform)]
    for step, temperature in enumerate(longform.temperatures):
        if not pending:
            return
        if temperature == 0.0:
            continue
        hot = replace(options, temperature=temperature, beam_size=None, patience=None)
        per_decode = max(1, max(len(requests), hot.group) // hot.group)  # windows per sampling decode
        chunks = [(exact, rows[start:start + per_decode]) for exact in (False, True)
                  for rows in _prompt_groups(requests, [i for i in pending if (i in rerun) == exact])
                  for start in range(0, len(rows), per_decode)]
        for exact, rows in chunks:
            source = dense.get(rows) if exact and dense.available else encoded.select(rows)
            session = (runner.exact_decoder if exact else runner.decoder)(source, hot.group)  # `best_of` rows each
            results = decode_batch(
                session, len(rows), runner.tokenizer, hot,
                [outcomes[i].result.language or languages[i] for i in rows],
                generators=[np.random.default_rng(requests[i].seed * 31 + step) for i in rows],
                previous=[requests[i].prompt for i in rows], prefixes=[requests[i].prefix for i in rows], cut=cut)
            for i, result in zip(rows, results):
                outcomes[i].result = result
        pending = [i for i in pending if needs_fallback(outcomes[i].result, longform)]
