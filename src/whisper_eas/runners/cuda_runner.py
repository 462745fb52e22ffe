"""GPU fast path: PyTorch CUDA FP16 with static shapes and CUDA graphs for encoder and decoder step.

One captured encoder graph per (batch, dense|pruned) and one decoder-step graph per
(rows, kept frames, cache bucket). The decoder cache grows through buckets of positions
(64, 128, 256, 448) so a short transcript never pays attention over 448 masked positions.
Optionally the encoder up to the pruning layer runs from float32 copies, so an FP16 model keeps the
frames the float32 reference keeps (docs/benchmarks.md: FP16 WER moves were all swapped frames);
off by default, since on an H200 it took 40% of the pruned encoder's time.
Runs eagerly (no graphs) on the CPU, which is how tests check it against the reference runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from whisper_eas.config import PruneConfig
from whisper_eas.errors import ConfigError
from whisper_eas.runners.base import EncodedBatch
from whisper_eas.runners.torch_runner import HFModelRunner, device_index, host_logits
from whisper_eas.sparsify import find_encoder
from whisper_eas.static_graphs import HEAD_PRECISIONS, GraphedCall, StaticDecoderStep, StaticEncoder, encoder_head
from whisper_eas.tokenizer import WhisperTokenizer

CACHE_BUCKETS = (64, 128, 256, 448)


def row_bucket(rows: int) -> int:
    """Rows a batch of `rows` runs as: 1, 2, 4, 8, then multiples of 8. Every distinct shape is
    one more graph capture (warm-up runs, a memory pool, for the encoder and for each cache bucket
    of the decoder step); without buckets the last batch of every job and each guard re-run of a
    few windows would capture its own. Padding costs at most 4 spare rows of 8 from 9 rows up."""
    if rows <= 8:
        return 1 << (rows - 1).bit_length()
    return -(-rows // 8) * 8


def _pad_rows(x: torch.Tensor, rows: int, dim: int = 0) -> torch.Tensor:
    if x.shape[dim] == rows:
        return x
    shape = list(x.shape)
    shape[dim] = rows - x.shape[dim]
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


class _StepGraph:
    """Buffers and the captured step for one (rows, kept frames, cache positions) shape.

    The cross-attention keys/values are shared by every cache bucket of the same (rows, frames)
    (`CudaGraphRunner.cross_buffers`): a session grows through the buckets over the same cross
    cache, which is the larger one (large-v3, 16 rows, 1500 frames: 3.9 GB against 1.2 GB of
    self cache at 448 positions), so it is held once rather than once per bucket.
    """

    def __init__(self, runner: "CudaGraphRunner", rows: int, frames: int, positions: int):
        cfg, dev, dt = runner.model.config, runner.device, runner.dtype
        heads = cfg.decoder_attention_heads
        head_dim = cfg.d_model // heads
        self.tokens = torch.zeros(rows, 1, dtype=torch.long, device=dev)
        self.pos = torch.zeros(1, dtype=torch.long, device=dev)
        shape = (cfg.decoder_layers, rows, heads, positions, head_dim)
        self.self_k = torch.zeros(shape, dtype=dt, device=dev)
        self.self_v = torch.zeros(shape, dtype=dt, device=dev)
        self.cross_k, self.cross_v = runner.cross_buffers(rows, frames)
        self.positions = positions
        inputs = (self.tokens, self.pos, self.self_k, self.self_v, self.cross_k, self.cross_v)
        self.call = GraphedCall(runner.step_module, inputs, enabled=runner.use_graphs, clone=False)

    def run(self):
        return self.call(self.tokens, self.pos, self.self_k, self.self_v, self.cross_k, self.cross_v, copy_inputs=False)


class CudaGraphSession:
    """Decoder session over static buffers; one live session per shape at a time. The batch runs
    padded to `row_bucket(rows)` rows; the padding rows decode zeros and are never returned."""

    def __init__(self, runner: "CudaGraphRunner", cross_k: torch.Tensor, cross_v: torch.Tensor):
        self.runner = runner
        self.rows, self.frames = cross_k.shape[1], cross_k.shape[3]
        self.padded = row_bucket(self.rows)
        self.offset = 0
        self.graph = runner.step_graph(self.padded, self.frames, CACHE_BUCKETS[0])
        self.graph.cross_k.copy_(_pad_rows(cross_k, self.padded, dim=1))
        self.graph.cross_v.copy_(_pad_rows(cross_v, self.padded, dim=1))

    def _grow(self) -> None:
        bigger = next(b for b in CACHE_BUCKETS if b > self.graph.positions)
        new = self.runner.step_graph(self.padded, self.frames, bigger)
        for src, dst in ((self.graph.self_k, new.self_k), (self.graph.self_v, new.self_v)):
            dst[:, :, :, : src.shape[3]].copy_(src)
        self.graph = new

    @torch.inference_mode()
    def step(self, tokens: np.ndarray, positions: Sequence[int] | None = None) -> np.ndarray:
        wanted = range(tokens.shape[1]) if positions is None else positions
        tokens = device_index(tokens, self.graph.tokens.device)
        logits = {}
        for j in range(tokens.shape[1]):
            if self.offset >= self.graph.positions:
                self._grow()
            self.graph.tokens[: self.rows].copy_(tokens[:, j : j + 1])
            self.graph.pos.fill_(self.offset)
            out = self.graph.run()
            if j in wanted:  # the graph's output buffer is overwritten by the next token
                logits[j] = out[: self.rows].clone()
            self.offset += 1
        return host_logits(torch.cat([logits[j] for j in wanted], dim=1))

    @torch.inference_mode()
    def reorder(self, index: np.ndarray) -> None:
        index = device_index(index, self.graph.self_k.device)
        if self.padded > self.rows:  # padding rows stay where they are
            index = torch.cat([index, torch.arange(self.rows, self.padded, device=index.device)])
        for buf in (self.graph.self_k, self.graph.self_v):
            buf.copy_(buf.index_select(1, index))


class CudaGraphRunner(HFModelRunner):
    """FP16 PyTorch on CUDA with captured graphs; fixed keep ratios only (static shapes)."""

    backend = "pytorch-cuda-graphs"

    def __init__(
        self,
        model: str | Path = "tiny.en",
        prune: PruneConfig | None = None,
        device: str = "cuda",
        dtype: torch.dtype = torch.float16,
        hf_model=None,
        use_graphs: bool = True,
        head_precision: str = "model",
        tokenizer: WhisperTokenizer | None = None,
    ):
        """`head_precision`: how the encoder up to the pruning layer runs (`EncoderHeadCopy`): in the
        model's dtype (default, fastest), or from float32 copies ("float32": exactly the float32
        reference's frames; "tf32": float32 with TF32 matmuls)."""
        if prune is not None and (prune.per_input or prune.needs_audio):
            raise ConfigError("the CUDA graph backend needs a fixed keep ratio (adaptive counts and dropped "
                              "padding change shapes)")
        if head_precision not in HEAD_PRECISIONS:  # checked here: the head is built on load
            raise ConfigError(f"head precision must be one of {', '.join(HEAD_PRECISIONS)}, got {head_precision!r}")
        super().__init__(model, prune, device, dtype, hf_model, tokenizer)
        self.use_graphs, self.head_precision = use_graphs, head_precision
        self._encoders: dict[tuple[int, bool], tuple[GraphedCall, StaticEncoder]] = {}
        self._steps: dict[tuple[int, int, int], _StepGraph] = {}
        self._cross: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _build(self) -> None:
        super()._build()
        # float32 copy of the encoder up to the pruning layer (or None), shared by every batch size
        self._head = encoder_head(find_encoder(self.model), self.prune, self.head_precision, self.dtype)
        self.step_module = StaticDecoderStep(self.model).eval()

    @property
    def head(self):
        """The encoder-head copy for `head_precision` (None: the head runs in the model's dtype); loads."""
        return self.load()._head

    def _encoder(self, batch: int, dense: bool, mel: torch.Tensor):
        key = (batch, dense or self.prune is None)
        if key not in self._encoders:
            module = StaticEncoder(self.model, *((None, None) if key[1] else (self.prune, self.head))).eval()
            self._encoders[key] = (GraphedCall(module, (mel,), enabled=self.use_graphs), module)
        return self._encoders[key]

    @torch.inference_mode()
    def encode(self, mel: np.ndarray, dense: bool = False) -> EncodedBatch:
        self.load()
        mel = torch.as_tensor(mel)
        head = self.head is not None and not dense  # the head takes the mel in its own dtype
        rows = mel.shape[0]
        mel = _pad_rows(mel.to(self.device, self.head.dtype if head else self.dtype), row_bucket(rows))
        call, module = self._encoder(mel.shape[0], dense, mel)
        hidden = call(mel)[:rows].clone()
        kept = None
        if module.pruner is not None and module.pruner.record.kept is not None:
            kept = module.pruner.record.kept[:rows].cpu().numpy()
        return EncodedBatch(hidden, kept, n_frames=self.model.config.max_source_positions)

    def cross_buffers(self, rows: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The cross-attention key/value buffers of every step graph of this (rows, frames)."""
        if (rows, frames) not in self._cross:
            cfg = self.model.config
            heads = cfg.decoder_attention_heads
            shape = (cfg.decoder_layers, rows, heads, frames, cfg.d_model // heads)
            self._cross[rows, frames] = tuple(torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in "kv")
        return self._cross[rows, frames]

    def step_graph(self, rows: int, frames: int, positions: int) -> _StepGraph:
        key = (rows, frames, positions)
        if key not in self._steps:
            self.load()
            self._steps[key] = _StepGraph(self, rows, frames, positions)
        return self._steps[key]

    @torch.inference_mode()
    def decoder(self, encoded: EncodedBatch, group: int = 1) -> CudaGraphSession:
        if encoded.frame_mask is not None:
            raise ConfigError(f"{self.backend}: padded batches (EncodedBatch.padded) decode on the pytorch runner only")
        self.load()
        hidden = torch.as_tensor(encoded.hidden)
        hidden = hidden.repeat_interleave(group, dim=0) if group > 1 else hidden
        cross_k, cross_v = self.cross_module(hidden)
        return CudaGraphSession(self, cross_k, cross_v)
