"""Backend-agnostic Whisper decoding: prompts, logit rules, greedy/sampling and beam search.

Follows openai/whisper's `decoding.py` (same suppression and timestamp rules, same ranking), but
drives any runner through a small session interface: `step(tokens) -> logits` over a KV cache,
and `reorder(index)` for beam search. The same code therefore decodes on PyTorch, ONNX Runtime
and TensorRT, which is what makes their transcripts comparable token for token. It runs on the
host in NumPy (tokens, logits and indices are arrays): the ONNX Runtime path imports no PyTorch,
and runners on a GPU hand over each step's logits (a few rows of the vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol, Sequence

import numpy as np

from whisper_eas.errors import ConfigError
from whisper_eas.repetition import RepetitionCut, compression_ratio
from whisper_eas.tokenizer import WhisperTokenizer

N_TEXT_CTX = 448


class DecoderSession(Protocol):
    """A KV-cached decoder for one batch of encoded windows."""

    def step(self, tokens: np.ndarray, positions: Sequence[int] | None = None) -> np.ndarray:
        """Feed new tokens [B, n] (int64); return float32 logits [B, n, vocab], or [B, m, vocab] for
        only these m positions of the n (a prompt step needs one or two: see `decode_batch`)."""

    def reorder(self, index: np.ndarray) -> None:
        """Reorder the batch rows of the cache (beam search)."""


class CompactingSession(DecoderSession, Protocol):
    """A session that can drop rows: greedy decoding stops stepping windows that have ended."""

    def select(self, rows: np.ndarray) -> None:
        """Keep only these batch rows (cache and cross keys/values), in this order."""


@dataclass(frozen=True)
class DecodingOptions:
    """How to decode one 30 s window. Frozen: verified on construction (`check()`)."""

    task: str = "transcribe"
    language: str | None = None  # None: English for .en models, detected for multilingual ones
    temperature: float = 0.0
    beam_size: int | None = None  # None or 1: greedy (or sampling when temperature > 0)
    best_of: int | None = None  # samples drawn per window at temperature > 0, best kept (ignored at 0)
    patience: float | None = None
    length_penalty: float | None = None
    sample_len: int | None = None  # most tokens to sample (default: half the text context)
    without_timestamps: bool = True
    max_initial_timestamp: float | None = 1.0
    suppress_blank: bool = True
    suppress_tokens: tuple[int, ...] | None = None  # None: Whisper's non-speech symbols
    prompt: tuple[int, ...] | None = None  # previous text tokens (conditioning)
    prefix: tuple[int, ...] | None = None  # text tokens forced at the start of the transcript

    @property
    def group(self) -> int:
        """Decoder rows per window: the beam width, the samples drawn at temperature > 0, else 1."""
        if self.temperature > 0:
            return self.best_of or 1
        return self.beam_size or 1

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        if self.task not in ("transcribe", "translate"):
            raise ConfigError(f"task must be transcribe or translate, got {self.task!r}")
        if self.beam_size is not None and self.beam_size < 1:
            raise ConfigError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.beam_size not in (None, 1) and self.temperature > 0:
            raise ConfigError("beam search is deterministic; use temperature 0 with beam_size > 1")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.patience is not None and self.beam_size in (None, 1):
            raise ConfigError("patience needs beam_size > 1")
        if self.best_of is not None and self.best_of < 1:
            raise ConfigError(f"best_of must be >= 1, got {self.best_of}")


@dataclass
class DecodingResult:
    """One window's decoded tokens and the quality signals the fallback rules use."""

    tokens: list[int]
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float
    language: str | None = None
    sum_logprob: float = 0.0
    extra: dict = field(default_factory=dict)


def suppressed_tokens(tokenizer: WhisperTokenizer, options: DecodingOptions) -> list[int]:
    base = list(options.suppress_tokens) if options.suppress_tokens is not None else tokenizer.non_speech_tokens()
    base += [tokenizer.transcribe, tokenizer.translate, tokenizer.sot, tokenizer.sot_prev, tokenizer.sot_lm]
    if tokenizer.no_speech is not None:
        base.append(tokenizer.no_speech)
    return sorted(set(base))


def _log_sum_exp_from(values: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """log(sum(exp(values - peak))) over the last axis (`peak`: [..., 1], the row's maximum)."""
    shifted = values - peak
    np.exp(shifted, out=shifted)
    return np.log(shifted.sum(axis=-1))


def logsumexp(values: np.ndarray) -> np.ndarray:
    """log(sum(exp(values))) over the last axis, stable, float32; -inf for rows of -inf (as torch)."""
    peak = values.max(axis=-1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, np.float32(0))
    with np.errstate(divide="ignore"):  # log(0): a row of -inf
        return _log_sum_exp_from(values, peak) + peak[..., 0]


class LogitRules:
    """Token suppression and timestamp grammar applied to each step's last-position logits."""

    def __init__(self, tokenizer: WhisperTokenizer, options: DecodingOptions, sample_begin: int,
                 transcript_begin: int | None = None):
        self.tok, self.options, self.sample_begin = tokenizer, options, sample_begin
        # the timestamp grammar reads the transcript from here: a forced prefix is part of it
        self.transcript_begin = sample_begin if transcript_begin is None else transcript_begin
        self.suppress = np.array(suppressed_tokens(tokenizer, options), np.int64)
        self.blank = np.array(tokenizer.encode(" ") + [tokenizer.eot], np.int64)
        self.max_initial = None
        if options.max_initial_timestamp is not None and not options.without_timestamps:
            self.max_initial = round(options.max_initial_timestamp / 0.02)

    def __call__(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        """Modify float32 `logits` [B, V] in place given the tokens so far [B, t]."""
        logits[:, self.suppress] = -np.inf
        if self.options.suppress_blank and tokens.shape[1] == self.sample_begin:
            logits[:, self.blank] = -np.inf
        if not self.options.without_timestamps:
            self._timestamp_rules(logits, tokens)

    def _timestamp_rules(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        ts_begin, eot = self.tok.timestamp_begin, self.tok.eot
        logits[:, self.tok.no_timestamps] = -np.inf
        for k, seq in enumerate(tokens[:, self.transcript_begin :].tolist()):  # plain ints: no per-row array ops
            last_was_ts = len(seq) >= 1 and seq[-1] >= ts_begin
            penultimate_was_ts = len(seq) < 2 or seq[-2] >= ts_begin
            if last_was_ts:
                if penultimate_was_ts:  # a pair closed: text must follow
                    logits[k, ts_begin:] = -np.inf
                else:  # a timestamp must pair up or end
                    logits[k, :eot] = -np.inf
            stamps = [t for t in seq if t >= ts_begin]
            if stamps:  # timestamps never go backwards
                last = stamps[-1] if last_was_ts and not penultimate_was_ts else stamps[-1] + 1
                logits[k, ts_begin:last] = -np.inf
        if tokens.shape[1] == self.transcript_begin:
            logits[:, :ts_begin] = -np.inf
            if self.max_initial is not None:
                logits[:, ts_begin + self.max_initial + 1 :] = -np.inf
        self._text_or_time(logits, ts_begin)

    @staticmethod
    def _text_or_time(logits: np.ndarray, ts_begin: int) -> None:
        """Where the timestamps' total probability beats the best text token, text is masked.
        openai/whisper compares log-probabilities; both sides share the softmax normaliser, so this
        compares the logits (one pass over the 1501 timestamps, none of the 51864-wide exp)."""
        rows = np.flatnonzero(logsumexp(logits[:, ts_begin:]) > logits[:, :ts_begin].max(axis=-1))
        if rows.size:
            logits[rows, :ts_begin] = -np.inf


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float32 log-probabilities over the last axis."""
    return logits - logsumexp(logits)[..., None]


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


class GreedyDecoder:
    """Argmax at temperature 0, else sampling from softmax(logits / T) with seeded NumPy generators.

    `generators`: one per window, each drawing its window's `group` rows at every step, so a
    window samples the same tokens whether it is decoded alone or beside others; None: one
    generator seeded 0 for every row."""

    def __init__(self, temperature: float, eot: int, generators: Sequence[np.random.Generator] | None = None,
                 group: int = 1):
        self.temperature, self.eot, self.group = temperature, eot, group
        self.generators = list(generators) if generators is not None else None
        self._shared = np.random.default_rng(0)

    def update(self, tokens: np.ndarray, logits: np.ndarray, sum_logprobs: np.ndarray):
        if self.temperature == 0:
            best = logits.argmax(axis=-1)
            peak = logits[np.arange(logits.shape[0]), best]  # log-softmax of the best: 0 - log(sum(exp(x - best)))
            current = -_log_sum_exp_from(logits, peak[:, None])
        else:
            best = self._sample(logits)
            current = logits[np.arange(logits.shape[0]), best] - logsumexp(logits)
        ended = tokens[:, -1] == self.eot
        sum_logprobs += current * ~ended
        best[ended] = self.eot
        tokens = np.concatenate([tokens, best[:, None].astype(tokens.dtype)], axis=-1)
        return tokens, bool((best == self.eot).all()), None

    def _sample(self, logits: np.ndarray) -> np.ndarray:
        """One token per row from softmax(logits / T), by inverting the cumulative distribution."""
        scaled = logits.astype(np.float64) / self.temperature
        weights = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
        cdf = np.cumsum(weights, axis=-1)
        draws = self._uniform(len(cdf)) * cdf[:, -1]
        return np.array([np.searchsorted(row, u, side="right") for row, u in zip(cdf, draws)], np.int64)

    def _uniform(self, n_rows: int) -> np.ndarray:
        if self.generators is None:
            return self._shared.random(n_rows)
        if n_rows != len(self.generators) * self.group:
            raise ValueError(f"{n_rows} rows to sample for {len(self.generators)} windows of {self.group}")
        return np.concatenate([g.random(self.group) for g in self.generators])

    def finalize(self, tokens: np.ndarray, sum_logprobs: np.ndarray):
        tokens = np.pad(tokens, ((0, 0), (0, 1)), constant_values=self.eot)
        return [[t] for t in tokens], [[s] for s in sum_logprobs.tolist()]


def _top(row: np.ndarray, k: int) -> tuple[list[float], list[int]]:
    """The k largest values of a row and their indices, best first (ties: lower index first)."""
    index = np.argpartition(row, -k)[-k:]
    index = index[np.lexsort((index, -row[index]))]
    return row[index].tolist(), index.tolist()


class BeamSearchDecoder:
    """openai/whisper's beam search with patience; finished sequences are collected per audio."""

    def __init__(self, beam_size: int, eot: int, patience: float | None = None):
        self.beam_size, self.eot = beam_size, eot
        self.patience = patience or 1.0
        self.max_candidates = round(beam_size * self.patience)
        self.finished: list[dict] | None = None

    def update(self, tokens: np.ndarray, logits: np.ndarray, sum_logprobs: np.ndarray):
        n_audio = tokens.shape[0] // self.beam_size
        if self.finished is None:
            self.finished = [{} for _ in range(n_audio)]
        logprobs = log_softmax(logits)
        next_tokens, source, finished_sequences = [], [], []
        for i in range(n_audio):
            scores, sources, finished = {}, {}, {}
            for j in range(self.beam_size):
                idx = i * self.beam_size + j
                prefix = tokens[idx].tolist()
                for logprob, token in zip(*_top(logprobs[idx], self.beam_size + 1)):
                    sequence = tuple(prefix + [token])
                    scores[sequence] = float(sum_logprobs[idx]) + logprob
                    sources[sequence] = idx
            saved = 0
            for sequence in sorted(scores, key=scores.get, reverse=True):
                if sequence[-1] == self.eot:
                    finished[sequence] = scores[sequence]
                else:
                    sum_logprobs[len(next_tokens)] = scores[sequence]
                    next_tokens.append(sequence)
                    source.append(sources[sequence])
                    saved += 1
                    if saved == self.beam_size:
                        break
            finished_sequences.append(finished)
        tokens = np.array(next_tokens, np.int64)
        for previous, new in zip(self.finished, finished_sequences):
            for seq in sorted(new, key=new.get, reverse=True):
                if len(previous) >= self.max_candidates:
                    break
                previous[seq] = new[seq]
        completed = all(len(s) >= self.max_candidates for s in self.finished)
        return tokens, completed, np.array(source, np.int64)

    def finalize(self, tokens: np.ndarray, sum_logprobs: np.ndarray):
        sum_list = sum_logprobs.tolist()
        for i, sequences in enumerate(self.finished or []):
            if len(sequences) < self.beam_size:  # not enough finished: take the best unfinished
                for j in sorted(range(self.beam_size), key=lambda j: -sum_list[i * self.beam_size + j]):
                    seq = tuple(tokens[i * self.beam_size + j].tolist()) + (self.eot,)
                    sequences[seq] = sum_list[i * self.beam_size + j]
                    if len(sequences) >= self.beam_size:
                        break
        tokens_out = [[np.array(s, np.int64) for s in seqs] for seqs in self.finished]
        scores_out = [list(seqs.values()) for seqs in self.finished]
        return tokens_out, scores_out


def _rank(tokens: list[list[int]], sum_logprobs: list[float], length_penalty: float | None) -> int:
    """Pick the best candidate by length-normalized log probability (openai's ranker)."""
    best, best_score = 0, -float("inf")
    for i, (t, logprob) in enumerate(zip(tokens, sum_logprobs)):
        length = len(t)
        penalty = length if length_penalty is None else ((5 + length) / 6) ** length_penalty
        if logprob / penalty > best_score:
            best, best_score = i, logprob / penalty
    return best


def initial_tokens(tokenizer: WhisperTokenizer, options: DecodingOptions, language: str | None) -> list[int]:
    """[<|startofprev|> prompt] <|startoftranscript|> [lang task] [<|notimestamps|>] [<|0.00|> prefix].

    A prefix is placed after the first timestamp (as faster-whisper does), so with timestamps the
    window still opens at 0.00 and the forced text is part of the first segment.
    """
    tokens = tokenizer.sot_sequence(language or "en", options.task)
    if options.prompt:
        tokens = [tokenizer.sot_prev] + list(options.prompt)[-(N_TEXT_CTX // 2 - 1) :] + tokens
    if options.without_timestamps:
        tokens.append(tokenizer.no_timestamps)
    if options.prefix:
        if not options.without_timestamps:
            tokens.append(tokenizer.timestamp_begin)
        tokens += list(options.prefix)[: N_TEXT_CTX // 2]
    return tokens


def decode_batch(
    session: DecoderSession,
    batch: int,
    tokenizer: WhisperTokenizer,
    options: DecodingOptions,
    languages: Sequence[str | None] | None = None,
    generators: Sequence[np.random.Generator] | None = None,
    previous: Sequence[Sequence[int]] | None = None,
    prefixes: Sequence[Sequence[int]] | None = None,
    cut: RepetitionCut | None = None,
) -> list[DecodingResult]:
    """Decode `batch` encoded windows whose session was opened with `beam_size` rows per window.

    `previous` gives each window its own previous-text tokens (long-form batching across files),
    overriding `options.prompt`; `prefixes` likewise each window's forced prefix (a file's first
    window only), overriding `options.prefix`; the resulting prompts must still have equal lengths.
    `cut`: end rows stuck in a loop early (greedy and sampling; `repetition.py`). `generators`:
    when sampling, one per window (see `GreedyDecoder`).
    """
    options.check()
    languages = list(languages) if languages is not None else [options.language] * batch
    previous = [options.prompt] * batch if previous is None else [tuple(p) or None for p in previous]
    prefixes = [options.prefix] * batch if prefixes is None else [tuple(p) or options.prefix for p in prefixes]
    prompts = [initial_tokens(tokenizer, replace(options, prompt=p, prefix=x), lang)
               for p, x, lang in zip(previous, prefixes, languages)]
    if len({len(x or ()) for x in prefixes}) != 1:
        raise ValueError("windows in one batch need prefixes of equal length")
    options = replace(options, prefix=prefixes[0])  # its length places the transcript's start
    if len({len(p) for p in prompts}) != 1:
        raise ValueError("windows in one batch need prompts of equal length")
    sample_begin = len(prompts[0])
    prefix_begin = sample_begin - _prefix_length(options)
    sot_index = prompts[0].index(tokenizer.sot)
    group = options.group
    tokens = np.repeat(np.array(prompts, np.int64), group, axis=0)
    rules = LogitRules(tokenizer, options, sample_begin, prefix_begin)
    beam = options.temperature == 0 and group > 1
    if beam:
        decoder = BeamSearchDecoder(group, tokenizer.eot, options.patience)
    else:  # greedy, or `best_of` independent samples per window
        decoder = GreedyDecoder(options.temperature, tokenizer.eot, generators, group)
    sample_len = options.sample_len or N_TEXT_CTX // 2
    sum_logprobs = np.zeros(tokens.shape[0], np.float32)

    wanted = sorted({sot_index, sample_begin - 1})  # no-speech probability and the first token
    logits = session.step(tokens, wanted)
    no_speech_probs = [float("nan")] * batch
    if tokenizer.no_speech is not None:
        probs = softmax(logits[::group, wanted.index(sot_index)])
        no_speech_probs = probs[:, tokenizer.no_speech].tolist()
    rows = None if beam else _RowCompactor(session, tokens.shape[0], tokenizer.eot)
    cut_at: dict[int, int] = {}  # row -> tokens sampled when it was cut
    for _ in range(sample_len):
        last = logits[:, -1]
        rules(last, tokens)
        tokens, completed, source = decoder.update(tokens, last, sum_logprobs)
        if source is not None:
            session.reorder(source)
        if cut is not None and not beam and not completed and cut.due(tokens.shape[1] - sample_begin):
            completed = _cut_stuck_rows(tokens, sample_begin, tokenizer, cut, cut_at)
        if completed or tokens.shape[-1] > N_TEXT_CTX:
            break
        logits = rows.step(tokens) if rows is not None else session.step(tokens[:, -1:])

    candidates, scores = decoder.finalize(tokens, sum_logprobs)
    if not beam and group > 1:  # one candidate per sampled row: regroup them per window
        candidates = [sum(candidates[i : i + group], []) for i in range(0, len(candidates), group)]
        scores = [sum(scores[i : i + group], []) for i in range(0, len(scores), group)]
    results = [
        _result(tokenizer, options, cands, cand_scores, prefix_begin, sample_begin, no_speech_probs[i], languages[i])
        for i, (cands, cand_scores) in enumerate(zip(candidates, scores))
    ]
    for row, at in cut_at.items():
        results[row // group].extra.setdefault("repetition_cut", []).append(at)
    return results


def _cut_stuck_rows(tokens: np.ndarray, sample_begin: int, tokenizer: WhisperTokenizer, cut: RepetitionCut,
                    cut_at: dict[int, int]) -> bool:
    """End (in place: end-of-text as the last token) the rows `cut` finds stuck; returns whether
    every row has now ended."""
    eot = tokenizer.eot
    for row, seq in enumerate(tokens[:, sample_begin:].tolist()):
        if seq[-1] == eot:
            continue
        text_tokens = [t for t in seq if t < eot]
        if cut.is_stuck(text_tokens, tokenizer.decode):
            tokens[row, -1] = eot
            cut_at[row] = len(seq)
    return bool((tokens[:, -1] == eot).all())


def _prefix_length(options: DecodingOptions) -> int:
    """Prompt tokens that belong to the transcript: the prefix (and the timestamp before it)."""
    if not options.prefix:
        return 0
    return len(list(options.prefix)[: N_TEXT_CTX // 2]) + (0 if options.without_timestamps else 1)


class _RowCompactor:
    """Greedy steps over the windows still decoding: ended rows leave the session's batch.

    Without it a batch steps every row until its longest window ends, and the logits projection
    (the largest matmul of a small model's step) is paid for rows that only repeat end-of-text.
    Rows are dropped once a quarter of them have ended, so the cache is gathered a few times per
    batch, not at every step. Sessions without `select` (static CUDA graphs) step every row.
    """

    def __init__(self, session: DecoderSession, n_rows: int, eot: int):
        self.session, self.eot = session, eot
        self.active = np.arange(n_rows)
        self.can_select = callable(getattr(session, "select", None))

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Logits [B, 1, vocab] for every row; rows that ended get zeros (the decoder ignores them)."""
        if self.can_select:
            alive = np.flatnonzero(tokens[self.active, -1] != self.eot)
            if len(alive) * 4 <= len(self.active) * 3:
                self.session.select(alive)
                self.active = self.active[alive]
        if len(self.active) == tokens.shape[0]:
            return self.session.step(np.ascontiguousarray(tokens[:, -1:]))
        logits = self.session.step(tokens[self.active, -1:])
        full = np.zeros((tokens.shape[0], *logits.shape[1:]), logits.dtype)
        full[self.active] = logits
        return full


def _result(tokenizer, options, candidates, scores, prefix_begin, sample_begin, no_speech_prob,
            language) -> DecodingResult:
    """The best candidate; its tokens include a forced prefix, its scores only the sampled tokens."""
    trimmed = []
    for t in candidates:
        t = t.tolist()[sample_begin:]
        trimmed.append(t[: t.index(tokenizer.eot)] if tokenizer.eot in t else t)
    best = _rank(trimmed, scores, options.length_penalty)
    sampled, sum_logprob = trimmed[best], scores[best]
    tokens = candidates[best].tolist()[prefix_begin:sample_begin] + sampled
    text = tokenizer.decode(tokens).strip()
    return DecodingResult(
        tokens=tokens,
        text=text,
        avg_logprob=sum_logprob / (len(sampled) + 1),
        no_speech_prob=no_speech_prob,
        compression_ratio=compression_ratio(text),
        temperature=options.temperature,
        language=language,
        sum_logprob=sum_logprob,
    )


def detect_language(session_factory, batch: int, tokenizer: WhisperTokenizer) -> list[tuple[str, dict]]:
    """Most likely language per window, from the first step's logits over language tokens."""
    if not tokenizer.multilingual:
        return [("en", {"en": 1.0})] * batch
    session = session_factory(1)
    logits = session.step(np.full((batch, 1), tokenizer.sot, np.int64))[:, 0]
    codes = list(tokenizer.languages)
    probs = softmax(logits[:, [tokenizer.languages[c] for c in codes]])
    out = []
    for row in probs:
        values = dict(zip(codes, row.tolist()))
        out.append((max(values, key=values.get), values))
    return out


def with_options(options: DecodingOptions, **changes) -> DecodingOptions:
    return replace(options, **changes)
