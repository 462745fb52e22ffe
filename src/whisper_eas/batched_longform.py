"""Batched long-form transcription of one file: VAD chunks decoded as independent windows.

The mode of faster-whisper's `BatchedInferencePipeline` and WhisperX: Silero VAD finds the speech
(`vad.py`), consecutive speech spans are concatenated into chunks of at most 30 s (silence between
them left out), and the chunks are decoded together, `batch_size` windows per batch, each with no
previous text (an initial prompt and hotwords prompt every chunk, as in faster-whisper's pipeline).
Times in a chunk are mapped back to the original recording span by span; so are word timestamps,
aligned on each chunk as the sequential mode aligns a window (`alignment.align_words`).

A file is read twice and never held whole: the VAD's pass keeps only its probabilities (one per
32 ms) and gives the chunks as times; the second pass cuts each chunk's samples as its blocks come,
and a batch is decoded as soon as its last chunk is read, then dropped. Batches are planned from
the chunks' lengths alone, so they are the same as when the whole file is in memory (an array
takes the same two passes over one block) and so is the transcript.

Against the sequential mode (`longform.py`, the default) it trades the previous-text conditioning
and openai/whisper's seek for batching within a file: much faster on a CPU or GPU with a long
recording, usually a little less accurate (see docs/benchmarks.md).

EAS and padding: a chunk shorter than 30 s is zero-padded to a full window. With a prune config,
the selection runs over the chunk's speech region only and the padding after it is dropped
wholesale (`PruneConfig(padding="drop")`, `selection.prune_hidden`), so `keep_ratio` applies to
the speech. Regions are rounded up to a 5 s grid and chunks of equal region are batched together,
so a batch's windows keep equal frame counts (the ONNX Runtime decoder has no cross-attention mask)
and each window's kept frames still depend on that window alone.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable, Iterable, Iterator

import numpy as np

from whisper_eas.audio import SAMPLE_RATE, AudioStream, array_stream
from whisper_eas.config import ENCODER_FRAMES_PER_SECOND, PruneConfig
from whisper_eas.decoding import DecodingOptions
from whisper_eas.errors import ConfigError
from whisper_eas.features import N_FFT, N_FRAMES, N_SAMPLES, TIME_PRECISION, log_mel, speech_bounds
from whisper_eas.guard import GuardOptions
from whisper_eas.longform import LongformOptions, WindowOutcome, WindowRequest, is_silence, split_segments
from whisper_eas.results import Segment, TranscriptionResult, WindowInfo, Word
from whisper_eas.runners.base import EncodedBatch, Runner
from whisper_eas.vad import SileroVad, SpeechSpan, VadOptions, default_vad, spans_of
from whisper_eas.window_decode import decode_windows

SAMPLES_PER_FRAME = SAMPLE_RATE // ENCODER_FRAMES_PER_SECOND  # 320 samples per encoder frame


@dataclass(frozen=True)
class BatchedOptions:
    """How a file is cut into chunks and how padded chunks are pruned."""

    vad: VadOptions = field(default_factory=VadOptions)
    chunk_s: float = 30.0  # longest chunk (a Whisper window)
    timestamps: bool = False  # decode timestamp tokens: segments within chunks (default: one per chunk)
    region_grid_s: float = 5.0  # speech regions of padded chunks are rounded up to this grid
    speech_floor_s: float = 10.0  # prune configs without padding="drop": region floor (issue 13)
    # samples per fallback temperature (None: the decoding options' best_of, 5 by default): one
    # sample per step keeps a chunk that falls back from holding its batch for seconds (issue 26)
    fallback_best_of: int | None = 1

    def check(self) -> None:
        self.vad.check()
        if not 1.0 <= self.chunk_s <= 30.0:
            raise ConfigError(f"chunk_s must be in [1, 30] seconds, got {self.chunk_s}")
        if not 0.0 < self.region_grid_s <= 30.0:
            raise ConfigError(f"region_grid_s must be in (0, 30], got {self.region_grid_s}")
        if self.fallback_best_of is not None and self.fallback_best_of < 1:
            raise ConfigError(f"fallback_best_of must be >= 1, got {self.fallback_best_of}")


@dataclass(frozen=True)
class Piece:
    """A speech span inside a chunk: chunk sample `at` is original sample `start`."""

    at: int
    start: int
    end: int


@dataclass
class Chunk:
    """Speech spans concatenated into at most one window; its samples are held only while it waits
    for its batch (`chunk_audio` fills them, decoding drops them)."""

    index: int
    pieces: list[Piece]
    samples: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        last = self.pieces[-1]
        return last.at + last.end - last.start

    @property
    def duration_s(self) -> float:
        return self.n_samples / SAMPLE_RATE

    @property
    def content_frames(self) -> int:
        return math.ceil(self.n_samples / SAMPLES_PER_FRAME)

    def original_time(self, t: float, is_end: bool = False) -> float:
        """Seconds into the chunk -> seconds into the recording (an end maps into the span it closes)."""
        sample = int(round(t * SAMPLE_RATE))
        piece = self.pieces[-1]
        for candidate in self.pieces:
            if sample < candidate.at + (candidate.end - candidate.start) + (1 if is_end else 0):
                piece = candidate
                break
        inside = min(max(sample - piece.at, 0), piece.end - piece.start)
        return (piece.start + inside) / SAMPLE_RATE


def plan_chunks(spans: list[SpeechSpan], max_s: float = 30.0) -> list[Chunk]:
    """Concatenate consecutive spans while the chunk stays within `max_s` (faster-whisper's
    `collect_chunks`); a span longer than that is cut (the VAD already splits at `max_speech_s`).
    Times only: the samples come later, from a pass over the audio (`chunk_audio`)."""
    limit = int(max_s * SAMPLE_RATE)
    groups: list[list[SpeechSpan]] = []
    length = 0
    for span in spans:
        span = SpeechSpan(span.start, min(span.end, span.start + limit))
        if groups and length + span.samples <= limit:
            groups[-1].append(span)
            length += span.samples
        else:
            groups.append([span])
            length = span.samples
    chunks = []
    for index, group in enumerate(groups):
        pieces, at = [], 0
        for span in group:
            pieces.append(Piece(at, span.start, span.end))
            at += span.samples
        chunks.append(Chunk(index, pieces))
    return chunks


def chunk_audio(blocks: Iterable[np.ndarray], chunks: list[Chunk]) -> Iterator[Chunk]:
    """`chunks` (in time order) with their samples cut from one pass over the audio's blocks, each
    yielded as soon as its last piece is read: a long recording is never held whole."""
    queue = [(chunk, piece) for chunk in chunks for piece in chunk.pieces]
    if not queue:
        return
    position, index = 0, 0
    for block in blocks:
        end = position + len(block)
        while index < len(queue) and (queue[index][1].start < end or queue[index][1].end <= end):
            chunk, piece = queue[index]
            if chunk.samples is None:
                chunk.samples = np.empty(chunk.n_samples, np.float32)
            lo, hi = max(piece.start, position), min(piece.end, end)
            if hi > lo:
                at = piece.at + lo - piece.start
                chunk.samples[at : at + hi - lo] = block[lo - position : hi - position]
            if piece.end > end:
                break
            index += 1
            if piece is chunk.pieces[-1]:
                yield chunk
        position = end
        if index == len(queue):
            return
    if index < len(queue):
        raise ValueError(f"the audio ended at {position / SAMPLE_RATE:.2f} s, inside its speech "
                         f"(read again, it gave fewer samples than the first pass)")


def make_chunks(audio: np.ndarray, spans: list[SpeechSpan], max_s: float = 30.0) -> list[Chunk]:
    """The chunks of in-memory `audio`, samples included (`plan_chunks`, then `chunk_audio`)."""
    return list(chunk_audio((np.asarray(audio, np.float32),), plan_chunks(spans, max_s)))


def region_config(prune: PruneConfig, options: BatchedOptions) -> PruneConfig:
    """The prune config for padded chunks: the padding dropped, the kept share over the speech."""
    if prune.padding == "drop":
        return prune
    return prune.with_(padding="drop", speech_floor=options.speech_floor_s)


def region_content(content_frames: int, options: BatchedOptions) -> int:
    """Content frames rounded up to the region grid (a window's frame count depends on it alone)."""
    grid = max(1, int(round(options.region_grid_s * ENCODER_FRAMES_PER_SECOND)))
    return min(N_FRAMES // 2, math.ceil(content_frames / grid) * grid)


def encode_speech(runner: Runner, mel: np.ndarray, content: list[int], config: PruneConfig) -> EncodedBatch:
    """Encode windows pruned within their speech regions (`content`: frames of audio per row).

    Rows must share the region (equal kept counts). Graph runners (ONNX Runtime, TensorRT) run
    head -> selection -> tail here (their prune graph has a static count), the PyTorch runner the
    same steps as its hooks. Other runners prune whole windows with their own config. The
    selection runs in PyTorch (`selection.prune_hidden`): this path imports it.
    """
    from whisper_eas.runners.graphs import GraphRunner

    reads_audio = runner.prune is not None and runner.prune.needs_audio  # its own pruning reads each row's region
    if min(content) >= N_FRAMES // 2 and config.onset_keep == 0 and not reads_audio:
        return runner.encode(mel)  # no padding: the runner's own (exported) pruning
    if isinstance(runner, GraphRunner):
        return _encode_graphs(runner, mel, _bounds(mel, content), config)
    if runner.backend == "pytorch":  # the CUDA-graph runner has static shapes: whole windows
        return _encode_torch(runner, mel, _bounds(mel, content), config)
    return runner.encode(mel)


def _bounds(mel: np.ndarray, content: list[int]) -> np.ndarray:
    """`features.speech_bounds` (speech onset, content end) with the end given: the grid region."""
    bounds = speech_bounds(np.asarray(mel, np.float32))
    bounds[:, 1] = content
    return bounds


def _keeps_whole_region(config: PruneConfig) -> bool:
    """The padding trim (keep ratio 1, time order): a chunk's region is kept as it is, a slice
    NumPy takes without PyTorch's selection code."""
    return (config.padding == "drop" and config.keep_ratio == 1.0 and not config.merge
            and config.strategy in ("uniform", "truncate"))


def _encode_graphs(runner, mel: np.ndarray, bounds: np.ndarray, config: PruneConfig) -> EncodedBatch:
    from whisper_eas.runners.graphs import host_array

    select = _slice_region if _keeps_whole_region(config) else _prune_with_torch
    graphs, parts = runner.graphs, []
    for row in range(mel.shape[0]):  # one window at a time is faster on a CPU (`encode_in_chunks`)
        head = graphs["encoder_head"].infer({"mel": runner._to_device(np.asarray(mel[row : row + 1], np.float32))})
        part, index = select(head, bounds[row : row + 1], config)
        tail = graphs["encoder_tail"].infer({"tail_input": runner._to_device(part)})["encoder_hidden"]
        parts.append(EncodedBatch(tail, host_array(index), n_frames=N_FRAMES // 2))
    return EncodedBatch.concat(parts)


def _slice_region(head: dict, bounds: np.ndarray, config: PruneConfig) -> tuple[np.ndarray, np.ndarray]:
    """(kept hidden, kept indices) of one window under the padding trim: its region, as it is."""
    from whisper_eas.runners.graphs import host_array

    hidden = host_array(head["head_hidden"])
    region = config.region_frames(int(bounds[0, 1]), hidden.shape[1])
    return np.ascontiguousarray(hidden[:, :region]), np.arange(region, dtype=np.int64)[None]


def _prune_with_torch(head: dict, bounds: np.ndarray, config: PruneConfig) -> tuple:
    """(kept hidden, kept indices) of one window by the config's selection (PyTorch's `prune_hidden`)."""
    import torch

    from whisper_eas.selection import prune_hidden

    hidden = torch.as_tensor(head["head_hidden"])
    scores = head.get("frame_scores")
    with torch.inference_mode():
        part, index = prune_hidden(hidden, None if scores is None else torch.as_tensor(scores), config,
                                   torch.as_tensor(bounds).to(hidden.device))
    return part.contiguous(), index


def _encode_torch(runner, mel: np.ndarray, bounds: np.ndarray, config: PruneConfig) -> EncodedBatch:
    """The hooks' computation (`sparsify.py`) with the region given, not read from the features."""
    import torch

    from whisper_eas.selection import attention_scores, prune_hidden
    from whisper_eas.sparsify import encoder_stem, find_encoder, run_blocks

    encoder = find_encoder(runner.model)
    attn, seen = encoder.layers[config.layer - 1].self_attn, {}
    hooks = [attn.q_proj.register_forward_hook(lambda _m, _i, out: seen.__setitem__("q", out)),
             attn.k_proj.register_forward_hook(lambda _m, _i, out: seen.__setitem__("k", out))]
    with torch.inference_mode():
        try:
            stem = encoder_stem(encoder, torch.as_tensor(mel).to(runner.device, runner.dtype))
            hidden = run_blocks(encoder.layers[: config.layer], stem)
        finally:
            for hook in hooks:
                hook.remove()
        scores = None
        if config.uses_attention:
            scores = attention_scores(seen["q"], seen["k"], attn.num_heads, config.scoring, config.query_stride)
        kept, index = prune_hidden(hidden, scores, config, torch.as_tensor(bounds).to(hidden.device))
        hidden = encoder.layer_norm(run_blocks(encoder.layers[config.layer :], kept))
    return EncodedBatch(hidden, index.cpu().numpy(), n_frames=N_FRAMES // 2)


@dataclass
class BatchedTranscript:
    """One file's batched result, before it becomes a `TranscriptionResult`."""

    segments: list[Segment]
    windows: list[WindowInfo]
    language: str | None
    language_prob: float | None
    chunks: int
    speech_s: float  # seconds of audio the VAD kept
    n_samples: int = 0  # of the recording
    load_s: float = 0.0  # the first pass: decoding the audio, checking it, its VAD


def transcribe_batched(
    runner: Runner,
    audio: np.ndarray | AudioStream,
    options: DecodingOptions,
    longform: LongformOptions,
    guard: GuardOptions,
    batch_size: int,
    batched: BatchedOptions,
    vad: SileroVad | None = None,
) -> BatchedTranscript:
    """VAD -> chunks -> windows decoded `batch_size` at a time -> segments in recording time.

    Two passes over a stream (checked in the first): the VAD's, which keeps only its probabilities
    and gives the chunks as times, then the chunks' samples, each batch decoded as soon as its last
    chunk is read and its samples dropped after, so memory stays flat in the recording's length.
    An array is the same two passes over one block."""
    batched.check()
    started = time.perf_counter()
    stream = audio if isinstance(audio, AudioStream) else array_stream("<array>", audio)  # checked by the caller
    probs, n_samples = (vad or default_vad()).stream_probabilities(stream.blocks(isinstance(audio, AudioStream)))
    chunks = plan_chunks(spans_of(probs, n_samples, batched.vad), batched.chunk_s)
    load_s = time.perf_counter() - started
    decoding = replace(options, without_timestamps=not batched.timestamps)
    if batched.fallback_best_of is not None:
        decoding = replace(decoding, best_of=min(decoding.best_of or 1, batched.fallback_best_of))
    decoding = replace(decoding, prompt=chunk_prompt(runner.tokenizer, options, longform))
    language, language_prob = options.language, None
    config = region_config(runner.prune, batched) if runner.prune is not None else None
    # the batches are planned from the chunks' lengths; each is decoded when its last chunk is read
    ready = {group[-1].index: group for group in _batches(chunks, batch_size, batched, config is not None)}
    outcomes: dict[int, WindowOutcome] = {}
    local: dict[int, list[Segment]] = {}
    align = None
    for chunk in chunk_audio(stream.blocks(False), chunks):
        if chunk.index == 0:
            if language is None and runner.tokenizer.multilingual:
                language, language_prob = file_language(runner, _request(runner, chunk, options, longform).mel)
            decoding = replace(decoding, language=language)
            if longform.word_timestamps:
                from whisper_eas.alignment import align_words

                align = partial(align_words, runner, language=language, task=options.task)
        group = ready.pop(chunk.index, None)
        if group is None:
            continue
        requests = [_request(runner, member, decoding, longform) for member in group]
        encoded = None
        if config is not None:
            mel = np.stack([r.mel for r in requests])
            encoded = encode_speech(runner, mel, [region_content(c.content_frames, batched) for c in group], config)
        decoded = decode_windows(runner, requests, decoding, longform, guard, encoded=encoded)
        for member, request, outcome in zip(group, requests, decoded):
            outcomes[member.index] = outcome
            local[member.index] = ([] if is_silence(outcome.result, longform)
                                   else _chunk_local(runner, member, outcome, request.mel, align))
            member.samples = None
    transcript = _assemble(chunks, outcomes, local, longform, duration_s=n_samples / SAMPLE_RATE)
    transcript.n_samples, transcript.load_s = n_samples, load_s
    if language_prob is not None:
        transcript.language_prob = language_prob
    return transcript


def chunk_prompt(tokenizer, options: DecodingOptions, longform: LongformOptions) -> tuple[int, ...] | None:
    """Every chunk's prompt, as faster-whisper's batched pipeline builds it: the hotwords, then the
    initial prompt, the same for all chunks (they are decoded together and have no previous text)."""
    hotwords = tokenizer.encode(" " + longform.hotwords.strip()) if longform.hotwords else []
    initial = tokenizer.encode(" " + longform.initial_prompt.strip()) if longform.initial_prompt else []
    return (*(options.prompt or ()), *hotwords, *initial) or None


def file_language(runner: Runner, mel: np.ndarray) -> tuple[str, float]:
    """The file's language, detected once on its first chunk, dense (as faster-whisper detects on
    the first 30 s): detected per chunk, accented English chunks came out Welsh or Chinese and
    looped (base, speech-val: 17.5% WER against faster-whisper's 10.0%)."""
    from whisper_eas.decoding import detect_language

    encoded = runner.encode(mel[None], dense=True)
    code, probs = detect_language(lambda group: runner.decoder(encoded, group), 1, runner.tokenizer)[0]
    return code, float(probs[code])


def _batches(chunks: list[Chunk], batch_size: int, batched: BatchedOptions, by_region: bool) -> list[list[Chunk]]:
    """Chunks in batches of `batch_size`; pruned, only chunks of equal region share a batch."""
    if not by_region:
        return [chunks[i : i + batch_size] for i in range(0, len(chunks), batch_size)]
    groups: dict[int, list[Chunk]] = {}
    for chunk in chunks:
        groups.setdefault(region_content(chunk.content_frames, batched), []).append(chunk)
    ordered = [group for _, group in sorted(groups.items(), reverse=True)]
    return [g[i : i + batch_size] for g in ordered for i in range(0, len(g), batch_size)]


def _request(runner: Runner, chunk: Chunk, options: DecodingOptions, longform: LongformOptions) -> WindowRequest:
    mel = _chunk_mel(runner, chunk)
    seed = longform.seed * 1_000_003 + chunk.pieces[0].start // 160
    return WindowRequest(mel, tuple(options.prompt or ()), options.language, seed=seed)


def _chunk_mel(runner: Runner, chunk: Chunk):
    # zeros up to 30 s and one FFT window more: Whisper's features (`window_features` pads a full 30 s: twice the STFT)
    return log_mel(chunk.samples, runner.n_mels, padding=N_SAMPLES - len(chunk.samples) + N_FFT)[:, :N_FRAMES]


def _assemble(chunks: list[Chunk], outcomes: dict[int, WindowOutcome], local: dict[int, list[Segment]],
              longform: LongformOptions, duration_s: float) -> BatchedTranscript:
    """The chunks' windows and segments in recording order and time (`local`: each chunk's segments
    in chunk time, none for a chunk skipped as silence)."""
    segments: list[Segment] = []
    windows: list[WindowInfo] = []
    language = language_prob = None
    for chunk in chunks:
        outcome = outcomes[chunk.index]
        result = outcome.result
        if language is None:
            language, language_prob = result.language, outcome.language_prob
        start = chunk.pieces[0].start / SAMPLE_RATE
        windows.append(WindowInfo(start, chunk.duration_s, outcome.kept_frames, outcome.n_frames, result.temperature,
                                  outcome.fallback, is_silence(result, longform)))
        segments += _recording_segments(chunk, local[chunk.index], len(segments), duration_s)
    return BatchedTranscript(segments, windows, language, language_prob, len(chunks),
                             sum(c.duration_s for c in chunks))


def _chunk_local(runner: Runner, chunk: Chunk, outcome: WindowOutcome, mel: np.ndarray,
                 align: Callable | None = None) -> list[Segment]:
    """A chunk's tokens cut at timestamp pairs (one span without timestamps), in chunk time (seek 0);
    `align` (`alignment.align_words`) gives the words, aligned on the chunk's features `mel`."""
    tokenizer, result = runner.tokenizer, outcome.result
    size = _mel_size(chunk)
    spans, _ = split_segments(result.tokens, tokenizer.timestamp_begin, size)
    local = [Segment(
        start=span.start, end=min(span.end, chunk.duration_s), text=tokenizer.decode(span.tokens),
        tokens=list(span.tokens), avg_logprob=result.avg_logprob, no_speech_prob=result.no_speech_prob,
        compression_ratio=result.compression_ratio, temperature=result.temperature, kept_frames=outcome.kept_frames,
        fallback=outcome.fallback, language=result.language) for span in spans]
    if align is not None and local:
        align(mel, size, outcome, local, 0.0)
    return local


def _mel_size(chunk: Chunk) -> int:
    """Mel frames of the chunk's audio."""
    return min(N_FRAMES, math.ceil(chunk.duration_s / TIME_PRECISION) * 2)


def _recording_segments(chunk: Chunk, local: list[Segment], first_id: int, duration_s: float) -> list[Segment]:
    """A chunk's segments (and words) mapped from chunk time to recording time, numbered from `first_id`."""
    chunk_end = min(chunk.pieces[-1].end / SAMPLE_RATE, math.floor(duration_s * 1000) / 1000)  # no time past the audio
    segments = []
    for segment in local:
        start = round(min(chunk.original_time(segment.start), chunk_end), 3)
        end = round(min(chunk.original_time(segment.end, is_end=True), chunk_end), 3)
        if end <= start or not segment.text.strip():
            continue
        segment.start, segment.end = start, end
        segment.id, segment.seek = first_id + len(segments), chunk.pieces[0].start // 160
        if segment.words is not None:
            segment.words = [_recording_word(chunk, word, chunk_end) for word in segment.words]
        segments.append(segment)
    return segments


def _recording_word(chunk: Chunk, word: Word, chunk_end: float) -> Word:
    """A word aligned in chunk time, in recording time (a word across a cut keeps its own span's start)."""
    start = round(min(chunk.original_time(word.start), chunk_end), 3)
    end = round(min(max(chunk.original_time(word.end, is_end=True), start), chunk_end), 3)
    return replace(word, start=start, end=end)


def batched_result(runner: Runner, source: str, part: BatchedTranscript, wall_s: float,
                   batch_size: int) -> TranscriptionResult:
    """The `TranscriptionResult` of one batched file (`timing` says it was batched, and how)."""
    info = runner.describe()
    timing = {"wall_s": round(wall_s, 4), "load_s": round(part.load_s, 4), "windows": len(part.windows),
              "batch_size": batch_size, "mode": "batched", "speech_s": round(part.speech_s, 3)}
    return TranscriptionResult(
        source=source, text="".join(s.text for s in part.segments).strip(), segments=part.segments,
        language=part.language, language_prob=part.language_prob, duration_s=part.n_samples / SAMPLE_RATE,
        model=info["model"], backend=info["backend"], device=info["device"], prune=info["prune"],
        windows=part.windows, timing=timing,
    )
