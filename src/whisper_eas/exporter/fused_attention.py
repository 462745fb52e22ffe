"""Encoder blocks whose self-attention exports as one ONNX Runtime `MultiHeadAttention` node.

Standard ONNX ops spell attention as MatMul, Softmax, MatMul over the whole [heads, T, T] scores
(`chunked_attention` slices the query rows so that only a quarter is held, bit-exactly).
`com.microsoft.MultiHeadAttention` on the CPU runs a tiled (flash) attention that never holds them,
~3% faster end to end. Opt-in (`whisper-eas export --attention
fused`): its float32 rounding differs, and on speech-val's long recordings the flipped near-ties
cost +0.82 WER (docs/benchmarks.md, "Fused encoder attention"). TensorRT has no such op: engines
need the standard ops (`ExportConfig.attention`).

The math is Hugging Face's `WhisperEncoderLayer` (pre-norm residual attention and MLP, queries
scaled before the product, the product itself unscaled), so PyTorch runs the same function the
graph holds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MHA_DOMAIN = "com.microsoft"


class _MultiHeadAttention(torch.autograd.Function):
    """softmax(q k^T) v over `heads` heads of [B, T, D] inputs (q already scaled): SDPA in PyTorch,
    one `com.microsoft::MultiHeadAttention` node (scale 1) in an exported graph."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
        b, t, d = q.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(b, -1, heads, d // heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(q), split(k), split(v), scale=1.0)
        return out.transpose(1, 2).reshape(b, t, d)

    @staticmethod
    def symbolic(g, q, k, v, heads: int):
        out = g.op(f"{MHA_DOMAIN}::MultiHeadAttention", q, k, v, num_heads_i=heads, scale_f=1.0)
        out.setType(q.type())  # the output is shaped as the queries (the exporter has no schema for it)
        return out


class FusedEncoderBlock(nn.Module):
    """One `WhisperEncoderLayer` (its own weights) with the attention as `_MultiHeadAttention`;
    called as the layer is (`sparsify.run_blocks`: hidden states and an unused mask)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor, attention_mask: None = None) -> torch.Tensor:
        block, attn = self.block, self.block.self_attn
        h = block.self_attn_layer_norm(x)
        q = attn.q_proj(h) * attn.scaling
        a = _MultiHeadAttention.apply(q, attn.k_proj(h), attn.v_proj(h), attn.num_heads)
        x = x + attn.out_proj(a)
        return x + block.fc2(block.activation_fn(block.fc1(block.final_layer_norm(x))))


def encoder_blocks(blocks, attention: str) -> nn.ModuleList:
    """`blocks` as they are ("standard"), or each wrapped in a `FusedEncoderBlock` ("fused"; the
    value is checked by `ExportConfig`)."""
    return nn.ModuleList([FusedEncoderBlock(b) for b in blocks] if attention == "fused" else blocks)
