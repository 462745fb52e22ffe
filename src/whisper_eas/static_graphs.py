"""Static-shape encoder and decoder step for CUDA graphs (the GPU fast path).

A CUDA graph replays a fixed sequence of kernels on fixed buffers, which removes the per-kernel
launch cost that otherwise dominates Whisper's decoder step (hundreds of small kernels per token).
That needs static shapes: the encoder keeps a fixed number of frames per (layer, keep ratio), and
the decoder writes its self-attention cache in place into a preallocated buffer at a position
held in a device tensor, attending through a mask instead of a growing concatenation.
The same modules run eagerly on the CPU, which is how their math is tested against the reference.
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from torch import nn

from whisper_eas.config import PruneConfig
from whisper_eas.decoder_step import DecoderModules, _heads
from whisper_eas.errors import ConfigError
from whisper_eas.sparsify import EncoderPruner, encoder_stem, find_encoder, run_blocks


def encoder_forward(encoder: nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """HF WhisperEncoder's math without its Python-side wrappers (graph-capture friendly)."""
    return encoder.layer_norm(run_blocks(encoder.layers, encoder_stem(encoder, mel)))


HEAD_PRECISIONS = ("model", "tf32", "float32")


class EncoderHeadCopy(nn.Module):
    """Copies of the convolution stem and blocks 1..L in another dtype (float32 beside an FP16 model).

    Which frames survive is decided from block L's attention; in FP16 its activations move enough
    to swap 1-2% of the kept frames, which moved single configs' WER by up to 0.5 points either way
    on the dev set. Running the few layers up to the pruning point in float32 keeps the float32
    reference's frames, at a price: float32 matmuls run at a fraction of the FP16 rate, so on an
    H200 this head took 40% of turbo's pruned encoder time (docs/benchmarks.md). `tf32`: the
    head's matmuls round their inputs to TF32 (float32 range and accumulation, FP16's mantissa).
    """

    def __init__(self, encoder: nn.Module, layers: int, dtype: torch.dtype, tf32: bool = False):
        super().__init__()
        self.conv1 = copy.deepcopy(encoder.conv1).to(dtype)
        self.conv2 = copy.deepcopy(encoder.conv2).to(dtype)
        self.embed_positions = copy.deepcopy(encoder.embed_positions).to(dtype)
        self.layers = nn.ModuleList(copy.deepcopy(block).to(dtype) for block in encoder.layers[:layers])
        self.dtype, self.tf32 = dtype, tf32


def encoder_head(encoder: nn.Module, prune: PruneConfig | None, precision: str,
                 model_dtype: torch.dtype) -> EncoderHeadCopy | None:
    """The head copy for `precision` ("model": none, the head runs in the model's dtype)."""
    if precision not in HEAD_PRECISIONS:
        raise ConfigError(f"head precision must be one of {', '.join(HEAD_PRECISIONS)}, got {precision!r}")
    if precision == "model" or prune is None or not prune.uses_attention or model_dtype == torch.float32:
        return None
    return EncoderHeadCopy(encoder, prune.layer, torch.float32, tf32=precision == "tf32")


@contextlib.contextmanager
def tf32_matmuls(enabled: bool):
    """TF32 on or off for CUDA matmuls and convolutions inside the block (fixed into a graph at capture)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class StaticEncoder(nn.Module):
    """mel [B, n_mels, 3000] -> hidden [B, K, D] with a fixed K (dense or a fixed keep ratio).

    `head` (pruned configs only): an `EncoderHeadCopy` that runs the stem and the blocks up to the
    pruning layer in its dtype; the rest runs in the model's.
    """

    def __init__(self, hf_model: nn.Module, prune: PruneConfig | None, head: EncoderHeadCopy | None = None):
        super().__init__()
        if prune is not None and (prune.per_input or prune.needs_audio):
            raise ConfigError("adaptive keep counts and dropped padding are data-dependent; CUDA graphs need a "
                              "fixed keep ratio")
        if head is not None and (prune is None or len(head.layers) != prune.layer):
            raise ConfigError("an encoder head copy must end at the pruning layer of a pruned config")
        self.encoder = find_encoder(hf_model)
        self.head = head
        self.pruner = EncoderPruner(head if head is not None else hf_model, prune) if prune is not None else None

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if self.pruner is None:
            return encoder_forward(self.encoder, mel)
        self.pruner.attach()
        try:
            if self.head is None:
                return encoder_forward(self.encoder, mel)
            with tf32_matmuls(self.head.tf32):
                x = run_blocks(self.head.layers, encoder_stem(self.head, mel.to(self.head.dtype)))  # pruned in block L
            x = run_blocks(self.encoder.layers[len(self.head.layers):], x.to(self.encoder.conv1.weight.dtype))
            return self.encoder.layer_norm(x)
        finally:
            self.pruner.detach()


class StaticDecoderStep(DecoderModules):
    """One token per row at position `pos` (a 1-element device tensor), cache updated in place.

    self_k/self_v: [L, B, H, M, Dh] preallocated (M = most positions); entries beyond `pos`
    are masked out. Returns logits [B, 1, V].
    """

    def forward(self, tokens, pos, self_k, self_v, cross_k, cross_v):
        x = self.embed_tokens(tokens) + self.embed_positions.weight.index_select(0, pos).unsqueeze(0)
        mask = (torch.arange(self_k.shape[3], device=tokens.device) <= pos).view(1, 1, 1, -1)
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            q = _heads(attn.q_proj(h) * attn.scaling, self.n_heads)
            self_k[i].index_copy_(2, pos, _heads(attn.k_proj(h), self.n_heads))
            self_v[i].index_copy_(2, pos, _heads(attn.v_proj(h), self.n_heads))
            out = F.scaled_dot_product_attention(q, self_k[i], self_v[i], attn_mask=mask, scale=1.0)
            x = x + attn.out_proj(out.transpose(1, 2).flatten(2))
            cross = layer.encoder_attn
            h = layer.encoder_attn_layer_norm(x)
            q = _heads(cross.q_proj(h) * cross.scaling, self.n_heads)
            out = F.scaled_dot_product_attention(q, cross_k[i], cross_v[i], scale=1.0)
            x = x + cross.out_proj(out.transpose(1, 2).flatten(2))
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        return self.proj_out(self.layer_norm(x))


class GraphedCall:
    """Capture `fn(*static_inputs)` once as a CUDA graph; `__call__` copies new inputs in and replays.

    On a CPU (or with `enabled=False`) it simply calls `fn`, so one code path serves both.
    """

    def __init__(
        self, fn, example_inputs: tuple[torch.Tensor, ...], enabled: bool = True, warmup: int = 2, clone: bool = True
    ):
        self.fn = fn
        self.enabled = enabled and example_inputs[0].is_cuda
        # clone=False binds the graph to the caller's tensors (caches updated in place)
        self.static_inputs = tuple(t.clone() for t in example_inputs) if clone else tuple(example_inputs)
        if not self.enabled:
            return
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(warmup):
                fn(*self.static_inputs)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.static_output = fn(*self.static_inputs)

    def __call__(self, *inputs: torch.Tensor, copy_inputs: bool = True):
        if not self.enabled:
            with torch.inference_mode():
                return self.fn(*inputs)
        if copy_inputs:
            for static, new in zip(self.static_inputs, inputs):
                if static.data_ptr() != new.data_ptr():
                    static.copy_(new)
        self.graph.replay()
        return self.static_output
