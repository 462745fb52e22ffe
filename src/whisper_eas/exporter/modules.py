"""Small torch modules traced into the encoder graphs; glue stays in the runtime wrappers.

They reuse the Hugging Face blocks as they are (the same weights and forward code the PyTorch
backend runs) and the selection functions of `whisper_eas.selection`, so the graphs and the
PyTorch reference are one implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from whisper_eas.config import PruneConfig
from whisper_eas.exporter.fused_attention import encoder_blocks
from whisper_eas.selection import attention_probs, prune_hidden, scores_from_probs
from whisper_eas.sparsify import encoder_stem, find_encoder, run_blocks


class ScoringBlock(nn.Module):
    """The scoring encoder block with explicit attention: one softmax serves output and scores.

    The PyTorch hooks score from the block's q/k beside its fused attention; in a graph both would
    be explicit, so the block's own probabilities are reused (same math as HF's
    `WhisperEncoderLayer`: pre-norm residual attention and MLP, queries scaled before the product).
    """

    def __init__(self, block: nn.Module, config: PruneConfig):
        super().__init__()
        self.block, self.config = block, config

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        block, attn = self.block, self.block.self_attn
        h = block.self_attn_layer_norm(x)
        probs = attention_probs(attn.q_proj(h), attn.k_proj(h), attn.num_heads)  # [B, H, T, T]
        b, t, d = h.shape
        v = attn.v_proj(h).reshape(b, t, attn.num_heads, d // attn.num_heads).transpose(1, 2)
        x = x + attn.out_proj((probs @ v).transpose(1, 2).reshape(b, t, d))
        x = x + block.fc2(block.activation_fn(block.fc1(block.final_layer_norm(x))))
        stride = self.config.query_stride
        return x, scores_from_probs(probs[:, :, ::stride], self.config.scoring, stride)


class EncoderHead(nn.Module):
    """mel [B, n_mels, 3000] -> hidden after block `layer` [B, T, D] (and frame scores [B, T]).

    `layer = 0` is the convolution stem alone (dense exports). Scores come from the scoring
    block's attention probabilities (`ScoringBlock`).
    """

    def __init__(self, hf_model: nn.Module, layer: int, config: PruneConfig | None, attention: str = "standard"):
        super().__init__()
        encoder = find_encoder(hf_model)
        self.conv1, self.conv2 = encoder.conv1, encoder.conv2
        self.embed_positions = encoder.embed_positions
        self.config = config
        self.with_scores = layer > 0 and config is not None and config.uses_attention
        plain = encoder.layers[: layer - 1] if self.with_scores else encoder.layers[:layer]
        self.blocks = encoder_blocks(plain, attention)
        self.scoring = ScoringBlock(encoder.layers[layer - 1], config) if self.with_scores else None

    def forward(self, mel: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = run_blocks(self.blocks, encoder_stem(self, mel))
        if not self.with_scores:
            return x
        return self.scoring(x)


class PruneStep(nn.Module):
    """(hidden [B, T, D][, scores [B, T]][, speech bounds [B, 2]]) -> (kept hidden [B, K, D], kept
    indices [B, K]), time order. Scores when the config ranks by attention; the bounds (speech onset,
    content end in encoder frames: `selection.speech_bounds` on the host) when it reads the audio."""

    def __init__(self, config: PruneConfig):
        super().__init__()
        self.config = config

    def forward(self, hidden: torch.Tensor, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = inputs[0] if self.config.uses_attention else None
        bounds = inputs[-1] if self.config.needs_audio else None
        return prune_hidden(hidden, scores, self.config, bounds)


class EncoderTail(nn.Module):
    """Blocks `layer+1..N` and the final layer norm on any sequence length [B, S, D]."""

    def __init__(self, hf_model: nn.Module, layer: int, attention: str = "standard"):
        super().__init__()
        encoder = find_encoder(hf_model)
        self.blocks = encoder_blocks(encoder.layers[layer:], attention)
        self.layer_norm = encoder.layer_norm

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(run_blocks(self.blocks, hidden))


class OutputProjection(nn.Module):
    """Logits as one Gemm(x, W, bias, transB=1) that reads W [V, D] as it is stored.

    A bias-free or 3-D linear exports as MatMul with a transposed copy of W folded into the graph
    (+V*D floats on disk and in memory, 80 MB for tiny, beside the embedding W is tied to); a 2-D
    linear with a bias (zeros when the model has none: exact) becomes a Gemm sharing the embedding
    initializer, and reads W once per step whatever the batch.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = linear.weight
        bias = linear.bias if linear.bias is not None else torch.zeros(linear.weight.shape[0])
        self.register_buffer("bias", bias.detach().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = F.linear(x.reshape(-1, x.shape[-1]), self.weight, self.bias)
        return logits.reshape(x.shape[0], x.shape[1], self.weight.shape[0])


class LayerwiseDecoderStep(nn.Module):
    """`DecoderStep` with one cache tensor per layer in and out: no per-step cache copies.

    A stacked [L, B, H, S, Dh] input is split per layer inside a graph, and ONNX Runtime copies
    every slice on every step (the cross keys/values of the whole window included); separate
    tensors are bound as they are, so the self-attention concat is the only per-step copy.
    Inputs: tokens, offset, logit_positions, self_k[L], self_v[L], cross_k[L], cross_v[L] (see
    `graph_specs`); logits only for `logit_positions` (a Gather before the final norm). The math is
    `DecoderStep.run_layers` itself.
    """

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        from whisper_eas.decoder_step import DecoderStep

        self.step = DecoderStep(hf_model)
        self.n_layers = len(self.step.layers)
        self.proj = OutputProjection(hf_model.proj_out)

    def forward(self, tokens: torch.Tensor, offset: torch.Tensor, logit_positions: torch.Tensor,
                *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = self.n_layers
        self_k, self_v = caches[:n], caches[n : 2 * n]
        cross_k, cross_v = caches[2 * n : 3 * n], caches[3 * n :]
        x, new_k, new_v = self.step.run_layers(tokens, offset, self_k, self_v, cross_k, cross_v)
        x = x.index_select(1, logit_positions)
        return (self.proj(self.step.layer_norm(x)), *new_k, *new_v)
