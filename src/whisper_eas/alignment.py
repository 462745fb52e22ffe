"""Word-level timestamps: cross-attention of the alignment heads + dynamic time warping, as
openai/whisper's `timing.py` does (same token layout, median filter, DTW, punctuation merging and
duration clamps), also under a pruned encoder.

The decoder is run once more over `<|startoftranscript|> ... <|notimestamps|> text <|endoftext|>`
and the alignment heads' cross-attention is read with hooks (independent of the attention
implementation, so the shared model is never switched to eager attention). With a pruned encoder
the attention covers only the kept frames: each 20 ms encoder frame takes the weight of the kept
frame whose cell holds it (the nearest kept frame in time, the cell `merge` averages), so DTW runs
on the same 1500-frame time grid as dense. The per-frame normalisation over tokens makes the
result independent of cell sizes.

Needs the runner's Hugging Face model (`runner.model`: the PyTorch and CUDA-graph runners) or an
ONNX export folder with the alignment graph (`exporter/align_graph.py`, ONNX Runtime).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

from whisper_eas.audio import SAMPLE_RATE
from whisper_eas.decoding import softmax
from whisper_eas.errors import WhisperEasError
from whisper_eas.exporter.graph_specs import ALIGN_FILE
from whisper_eas.runners.ort_align import Attention, has_align_graph, ort_attention
from whisper_eas.features import HOP_LENGTH, N_FRAMES
from whisper_eas.results import Segment, Word

TOKENS_PER_SECOND = 50  # encoder frames per second (20 ms each)
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
SENTENCE_END = ".。!！?？"
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}


class WordTimestampsUnsupported(WhisperEasError, ValueError):
    """The runner cannot expose cross-attention (exported graphs, TensorRT engines)."""


@dataclass
class WordTiming:
    word: str
    tokens: list[int]
    start: float
    end: float
    probability: float


def check_supported(runner) -> None:
    """One clear error, up front, for a runner that cannot give word timestamps."""
    align_graph = has_align_graph(runner)
    if align_graph is False:
        raise WordTimestampsUnsupported(
            f"{runner.export.directory} has no alignment graph ({ALIGN_FILE}): it was exported before word "
            "timestamps ran on ONNX Runtime; re-export the folder for word timestamps, or use backend='pytorch'")
    if align_graph is None and (getattr(runner, "model", None) is None or not hasattr(runner.model, "model")):
        raise WordTimestampsUnsupported(
            f"word timestamps need the decoder's cross-attention, which the {runner.backend} runner does not "
            "expose; use backend='pytorch' (or --backend pytorch, or an ONNX export folder)")


def cross_attention(runner) -> Attention:
    """Where the alignment heads' scores come from: the export's alignment graph on ONNX Runtime,
    else the runner's PyTorch model (read with hooks)."""
    if has_align_graph(runner):
        return ort_attention(runner)
    from whisper_eas.exporter.align_graph import alignment_heads

    model = runner.model
    heads = alignment_heads(model)
    return lambda hidden, tokens: _cross_attention(model, hidden, tokens, heads)


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a sliding window on the last axis, reflect-padded (openai's filter)."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1), axis=-1).astype(x.dtype)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotonic path through `cost` [tokens, frames] (openai's dtw_cpu and its backtrace)."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    trace = np.full((n + 1, m + 1), -1, dtype=np.int8)
    acc[0, 0] = 0
    for j in range(1, m + 1):  # column by column: each column is a running minimum down the tokens
        for i in range(1, n + 1):
            c0, c1, c2 = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            acc[i, j] = cost[i - 1, j - 1] + c
            trace[i, j] = t
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j, path = n, m, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        t = trace[i, j]
        if t == 0:
            i, j = i - 1, j - 1
        elif t == 1:
            i -= 1
        else:
            j -= 1
    path = np.array(path[::-1])
    return path[:, 0], path[:, 1]


def _cross_attention(model, hidden, tokens: list[int], heads: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(alignment heads' raw scores [H, T, K] over the encoded frames, logits [T, vocab]) from the
    PyTorch model's decoder, read with hooks."""
    import torch

    with torch.inference_mode():
        scores, logits = _torch_cross_attention(model, torch.as_tensor(hidden), tokens, heads)
    return scores.cpu().numpy(), logits.cpu().numpy()


def _torch_cross_attention(model, hidden, tokens: list[int], heads: list[tuple[int, int]]):
    import torch

    layers = model.model.decoder.layers
    captured: dict = {}

    def hook(index):
        def capture(module, args, kwargs, output):
            captured[index] = kwargs.get("hidden_states", args[0] if args else None)
        return capture

    wanted = sorted({layer for layer, _ in heads})
    handles = [layers[i].encoder_attn.register_forward_hook(hook(i), with_kwargs=True) for i in wanted]
    try:
        ids = torch.tensor([tokens], device=hidden.device)
        out = model.model.decoder(input_ids=ids, encoder_hidden_states=hidden)
        logits = model.proj_out(out.last_hidden_state)[0].float()
    finally:
        for handle in handles:
            handle.remove()
    weights = []
    for layer, head in heads:
        attn = layers[layer].encoder_attn
        q = (attn.q_proj(captured[layer]) * attn.scaling)[0].view(len(tokens), -1, attn.head_dim)[:, head]
        k = attn.k_proj(hidden)[0].view(hidden.shape[1], -1, attn.head_dim)[:, head]
        weights.append((q.float() @ k.float().T))  # raw scores [T, K]
    return torch.stack(weights), logits


def _to_time_grid(scores: np.ndarray, kept: np.ndarray | None, n_frames: int, n_time: int) -> np.ndarray:
    """Softmax over the kept frames inside the audio, spread onto `n_time` encoder frames by cell."""
    if kept is None:
        return softmax(np.ascontiguousarray(scores[..., :n_time]))
    kept = np.asarray(kept, np.int64)
    inside = kept < max(n_time, 1)
    probs = softmax(np.where(inside, scores, np.float32(-np.inf)))
    twice_bounds = kept[1:] + kept[:-1]
    frames = np.arange(n_time) * 2
    cell = (frames[:, None] > twice_bounds[None, :]).sum(axis=-1)  # nearest kept frame of each time frame
    return probs[..., cell]


def find_alignment(attend: Attention, tokenizer, text_tokens: list[int], hidden,
                   kept: np.ndarray | None, num_frames: int, language: str | None, task: str,
                   medfilt_width: int = 7) -> list[WordTiming]:
    """openai's `find_alignment` on an encoded window (`hidden` [1, K, D], `kept` [K] or None);
    `attend` gives the alignment heads' scores (`cross_attention(runner)`)."""
    if not text_tokens:
        return []
    sot = tokenizer.sot_sequence(language or "en", task)
    tokens = [*sot, tokenizer.no_timestamps, *text_tokens, tokenizer.eot]
    scores, logits = attend(hidden, tokens)
    probs = softmax(np.asarray(logits[len(sot): len(sot) + len(text_tokens), : tokenizer.eot], np.float32))
    token_probs = probs[np.arange(len(text_tokens)), text_tokens].tolist()
    weights = _to_time_grid(np.asarray(scores, np.float32), kept, hidden.shape[1], num_frames // 2)
    mean = weights.mean(axis=-2, keepdims=True)
    std = weights.std(axis=-2, keepdims=True)
    weights = median_filter((weights - mean) / np.maximum(std, np.float32(1e-10)), medfilt_width)
    matrix = weights.mean(axis=0)[len(sot): -1]
    text_index, time_index = dtw(-matrix.astype(np.float64))
    words, word_tokens = split_to_word_tokens(tokenizer, text_tokens + [tokenizer.eot], language)
    if len(word_tokens) <= 1:
        return []
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_index), (1, 0), constant_values=1).astype(bool)
    jump_times = time_index[jumps] / TOKENS_PER_SECOND
    starts, ends = jump_times[boundaries[:-1]], jump_times[boundaries[1:]]
    return [WordTiming(word, toks, float(s), float(e), float(np.mean(token_probs[i:j])))
            for word, toks, s, e, i, j in zip(words, word_tokens, starts, ends, boundaries[:-1], boundaries[1:])]


def split_to_word_tokens(tokenizer, tokens: list[int], language: str | None) -> tuple[list[str], list[list[int]]]:
    """Words and their tokens: on spaces and punctuation, or on characters for languages without spaces."""
    subwords, subword_tokens = _split_on_unicode(tokenizer, tokens)
    if language in NO_SPACE_LANGUAGES:
        return subwords, subword_tokens
    words: list[str] = []
    word_tokens: list[list[int]] = []
    for subword, toks in zip(subwords, subword_tokens):
        special = toks[0] >= tokenizer.eot
        if special or subword.startswith(" ") or subword.strip() in string.punctuation or not words:
            words.append(subword)
            word_tokens.append(list(toks))
        else:
            words[-1] += subword
            word_tokens[-1].extend(toks)
    return words, word_tokens


def _split_on_unicode(tokenizer, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
    """Token groups that decode to whole characters (a multi-byte character can span tokens)."""
    full = tokenizer.tokenizer.decode(tokens, skip_special_tokens=False)
    words, word_tokens, current, offset = [], [], [], 0
    for token in tokens:
        current.append(token)
        decoded = tokenizer.tokenizer.decode(current, skip_special_tokens=False)
        if "\ufffd" not in decoded or full[offset + decoded.index("\ufffd")] == "\ufffd":
            words.append(decoded)
            word_tokens.append(current)
            current, offset = [], offset + len(decoded)
    return words, word_tokens


def merge_punctuations(alignment: list[WordTiming], prepended: str = PREPEND_PUNCTUATIONS,
                       appended: str = APPEND_PUNCTUATIONS) -> None:
    """Opening punctuation joins the next word, closing punctuation the previous one (openai)."""
    i, j = len(alignment) - 2, len(alignment) - 1
    while i >= 0:
        previous, following = alignment[i], alignment[j]
        if previous.word.startswith(" ") and previous.word.strip() in prepended:
            following.word, following.tokens = previous.word + following.word, previous.tokens + following.tokens
            previous.word, previous.tokens = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(alignment):
        previous, following = alignment[i], alignment[j]
        if not previous.word.endswith(" ") and following.word in appended:
            previous.word, previous.tokens = previous.word + following.word, previous.tokens + following.tokens
            following.word, following.tokens = "", []
        else:
            i = j
        j += 1


def _clamp_long_words(alignment: list[WordTiming]) -> tuple[float, float]:
    """openai's hack: words at sentence boundaries no longer than twice the median; (median, max)."""
    durations = np.array([t.end - t.start for t in alignment])
    durations = durations[durations.nonzero()]
    median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
    longest = median * 2
    if len(durations):
        for i in range(1, len(alignment)):
            if alignment[i].end - alignment[i].start > longest:
                if alignment[i].word in SENTENCE_END:
                    alignment[i].end = alignment[i].start + longest
                elif alignment[i - 1].word in SENTENCE_END:
                    alignment[i].start = alignment[i].end - longest
    return median, longest


def add_word_timestamps(segments: list[Segment], alignment: list[WordTiming], offset: float,
                        last_speech: float, eot: int) -> float:
    """Give each segment its words (times from `offset`), adjusting segment bounds as openai does;
    returns the end of the last speech."""
    median, longest = _clamp_long_words(alignment)
    merge_punctuations(alignment)
    index = 0
    for segment in segments:
        n_text = sum(1 for t in segment.tokens if t < eot)
        saved, words = 0, []
        while index < len(alignment) and saved < n_text:
            timing = alignment[index]
            if timing.word:
                words.append(Word(round(offset + timing.start, 2), round(offset + timing.end, 2), timing.word,
                                  round(timing.probability, 4)))
            saved += len(timing.tokens)
            index += 1
        if words:
            _fit_segment(segment, words, median, longest, last_speech)
            last_speech = segment.end
        segment.words = words
    return last_speech


def _fit_segment(segment: Segment, words: list[Word], median: float, longest: float, last_speech: float) -> None:
    """openai's boundary hacks: no overlong first word after a pause; segment bounds follow the words."""
    first = words[0]
    if first.end - last_speech > median * 4 and (
            first.end - first.start > longest or (len(words) > 1 and words[1].end - first.start > longest * 2)):
        if len(words) > 1 and words[1].end - words[1].start > longest:
            boundary = max(words[1].end / 2, words[1].end - longest)
            first.end = words[1].start = boundary
        first.start = max(0.0, first.end - longest)
    if segment.start < first.end and segment.start - 0.5 > first.start:
        first.start = max(0.0, min(first.end - median, segment.start))
    else:
        segment.start = first.start
    last = words[-1]
    if segment.end > last.start and segment.end + 0.5 < last.end:
        last.end = max(last.start + median, segment.end)
    else:
        segment.end = last.end


def align_words(runner, window: np.ndarray, n_frames: int, outcome, segments: list[Segment], last_speech: float,
                *, language: str | None = None, task: str = "transcribe") -> None:
    """LongformFile's `align` hook: word timings for a window's new segments, in place.

    The window is encoded again the way it was decoded (dense after a guard re-run, else with the
    runner's config; fixed configs select the same frames again)."""
    if not segments:
        return
    encoded = runner.encode(window[None], dense=outcome.fallback is not None)
    hidden = encoded.hidden
    kept = encoded.kept[0] if encoded.kept is not None else None
    tokenizer = runner.tokenizer
    text_tokens = [t for s in segments for t in s.tokens if t < tokenizer.eot]
    alignment = find_alignment(cross_attention(runner), tokenizer, text_tokens, hidden, kept, min(N_FRAMES, n_frames),
                               outcome.result.language or language, task)
    offset = segments[0].seek * HOP_LENGTH / SAMPLE_RATE
    add_word_timestamps(segments, alignment, offset, last_speech, tokenizer.eot)
