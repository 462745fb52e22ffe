"""A KV-cached Whisper decoder on the Hugging Face weights, with explicit cache tensors.

Explicit tensors (rather than HF's Cache objects) make one module serve three places: the PyTorch
runner, the ONNX export (`decoder_cross.onnx`, `decoder_step.onnx`), and CUDA graph capture. The
math follows HF's `WhisperDecoderLayer` step by step (queries scaled before the product, pre-norm
residual blocks), so greedy transcripts match the HF model's.

Cache layout: [L, B, H, S, Dh] (layers, batch, heads, positions, head width), one tensor for keys
and one for values, for self-attention (growing) and cross-attention (fixed per window).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, s, d = x.shape
    return x.view(b, s, n_heads, d // n_heads).transpose(1, 2)


class DecoderCrossKV(nn.Module):
    """Encoder output [B, S, D] -> cross-attention keys and values [L, B, H, S, Dh], computed once."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        decoder = hf_model.model.decoder
        self.layers = decoder.layers
        self.n_heads = decoder.layers[0].encoder_attn.num_heads

    def forward(self, encoder_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = [], []
        for layer in self.layers:
            attn = layer.encoder_attn
            keys.append(_heads(attn.k_proj(encoder_hidden), self.n_heads))
            values.append(_heads(attn.v_proj(encoder_hidden), self.n_heads))
        return torch.stack(keys), torch.stack(values)


class DecoderModules(nn.Module):
    """The decoder's weights (embeddings, layers, final norm, output projection), shared by the steps."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        decoder = hf_model.model.decoder
        self.embed_tokens = decoder.embed_tokens
        self.embed_positions = decoder.embed_positions
        self.layers = decoder.layers
        self.layer_norm = decoder.layer_norm
        self.proj_out = hf_model.proj_out
        self.n_heads = decoder.layers[0].self_attn.num_heads


class DecoderStep(DecoderModules):
    """(tokens [B, n], offset, self cache [L, B, H, P, Dh] x2, cross k/v) -> logits [B, n, V], new cache.

    The new cache holds P + n positions. `cross_mask` ([B, S], 1 = keep) is optional and lets
    a batch hold windows with different kept-frame counts, padded to the longest. `positions`
    ([m], indices into the n new tokens) projects only those positions to logits [B, m, V]: a
    prompt step needs the last position (and the start token's, for the no-speech probability),
    and projecting all of them over the vocabulary cost up to ~220 x a step's largest matmul.
    """

    def _self_attention(self, layer, x, past_k, past_v, mask):
        attn = layer.self_attn
        q = _heads(attn.q_proj(x) * attn.scaling, self.n_heads)
        k = torch.cat([past_k, _heads(attn.k_proj(x), self.n_heads)], dim=2)
        v = torch.cat([past_v, _heads(attn.v_proj(x), self.n_heads)], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        return attn.out_proj(out.transpose(1, 2).flatten(2)), k, v

    def _cross_attention(self, layer, x, cross_k, cross_v, cross_mask):
        attn = layer.encoder_attn
        q = _heads(attn.q_proj(x) * attn.scaling, self.n_heads)
        out = F.scaled_dot_product_attention(q, cross_k, cross_v, attn_mask=cross_mask, scale=1.0)
        return attn.out_proj(out.transpose(1, 2).flatten(2))

    def run_layers(self, tokens, offset, self_k, self_v, cross_k, cross_v, cross_mask=None):
        """Hidden state after the last layer (before the final norm) and each layer's new k/v.

        Caches may be stacked tensors or per-layer sequences: only `cache[i]` is used.
        """
        n = tokens.shape[1]
        past = self_k[0].shape[2]
        positions = offset + torch.arange(n, device=tokens.device)
        x = self.embed_tokens(tokens) + self.embed_positions.weight[positions]
        # causal mask over [past + new]: new token i sees every past position and new tokens <= i
        key_pos = torch.arange(past + n, device=tokens.device)
        query_pos = past + torch.arange(n, device=tokens.device)
        mask = key_pos.unsqueeze(0) <= query_pos.unsqueeze(1)  # [n, P + n]
        attn_cross = None if cross_mask is None else cross_mask[:, None, None, :].to(torch.bool)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            h, k, v = self._self_attention(layer, layer.self_attn_layer_norm(x), self_k[i], self_v[i], mask)
            x = x + h
            new_k.append(k)
            new_v.append(v)
            x = x + self._cross_attention(layer, layer.encoder_attn_layer_norm(x), cross_k[i], cross_v[i], attn_cross)
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        return x, new_k, new_v

    def forward(
        self,
        tokens: torch.Tensor,
        offset: torch.Tensor,
        self_k: torch.Tensor,
        self_v: torch.Tensor,
        cross_k: torch.Tensor,
        cross_v: torch.Tensor,
        cross_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, new_k, new_v = self.run_layers(tokens, offset, self_k, self_v, cross_k, cross_v, cross_mask)
        if positions is not None:
            x = x.index_select(1, positions.to(x.device))
        return self.proj_out(self.layer_norm(x)), torch.stack(new_k), torch.stack(new_v)


def empty_self_cache(hf_model: nn.Module, batch: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-length self-attention cache [L, B, H, 0, Dh] for the first step."""
    config = hf_model.config
    heads = config.decoder_attention_heads
    shape = (config.decoder_layers, batch, heads, 0, config.d_model // heads)
    return torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)
