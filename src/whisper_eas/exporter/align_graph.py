"""The alignment graph: word timestamps on ONNX Runtime.

Word timing (`alignment.py`) runs the decoder once over a window's whole token sequence and reads
the cross-attention scores of the checkpoint's alignment heads. The exported step graphs give
logits only, so the export folder gets one more graph, `align.onnx`:
tokens [1, T] + encoder hidden states [1, K, D] -> raw scores of the alignment heads [H, T, K]
(query . key, before the softmax, as `alignment._cross_attention` returns them) and logits [T, V].
K is dynamic, so a pruned encoder's kept frames go in as they are. The heads are fixed at export.

The graph is recorded in the manifest's `files` (sha256) but not among its `graphs`, so folders
exported before it existed still load; word timestamps on them say to re-export.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from whisper_eas.exporter.graph_specs import ALIGN_FILE  # noqa: E402  (the file name, beside the other specs)


def alignment_heads(model: nn.Module) -> list[tuple[int, int]]:
    """(layer, head) pairs from the checkpoint (CTranslate2 config / HF generation_config), else
    openai's default: every head of the second half of the decoder layers."""
    heads = getattr(getattr(model, "generation_config", None), "alignment_heads", None)
    if heads:
        return [(int(layer), int(head)) for layer, head in heads]
    layers, n_heads = model.config.decoder_layers, model.config.decoder_attention_heads
    return [(layer, head) for layer in range(layers // 2, layers) for head in range(n_heads)]


class AlignmentGraph(nn.Module):
    """The Hugging Face Whisper decoder written out without a cache: every layer over all T tokens,
    the alignment heads' cross-attention scores collected on the way."""

    def __init__(self, hf_model: nn.Module, heads: list[tuple[int, int]]):
        super().__init__()
        self.decoder, self.proj_out, self.heads = hf_model.model.decoder, hf_model.proj_out, heads

    @staticmethod
    def _split(x: torch.Tensor, n: int, head_dim: int) -> torch.Tensor:
        return x.view(1, n, -1, head_dim).transpose(1, 2)

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, k = tokens.shape[1], hidden.shape[1]
        x = self.decoder.embed_tokens(tokens) + self.decoder.embed_positions.weight[:n]
        causal = torch.full((n, n), float("-inf"), device=tokens.device).triu(1)
        scores = []
        for index, layer in enumerate(self.decoder.layers):
            attn, h = layer.self_attn, layer.self_attn_layer_norm(x)
            q = self._split(attn.q_proj(h) * attn.scaling, n, attn.head_dim)
            weights = (q @ self._split(attn.k_proj(h), n, attn.head_dim).transpose(-1, -2) + causal).softmax(-1)
            mixed = weights @ self._split(attn.v_proj(h), n, attn.head_dim)
            x = x + attn.out_proj(mixed.transpose(1, 2).reshape(1, n, -1))
            cross, h = layer.encoder_attn, layer.encoder_attn_layer_norm(x)
            q = self._split(cross.q_proj(h) * cross.scaling, n, cross.head_dim)
            raw = q @ self._split(cross.k_proj(hidden), k, cross.head_dim).transpose(-1, -2)  # [1, heads, T, K]
            scores += [raw[0, head] for layer_index, head in self.heads if layer_index == index]
            values = self._split(cross.v_proj(hidden), k, cross.head_dim)
            x = x + cross.out_proj((raw.softmax(-1) @ values).transpose(1, 2).reshape(1, n, -1))
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        return torch.stack(scores), self.proj_out(self.decoder.layer_norm(x))[0]


def export_align_graph(hf_model: nn.Module, out_dir: str | Path, opset: int) -> Path:
    """Write `out_dir/align.onnx` for a float32 CPU model; returns its path."""
    import warnings

    import onnx

    path = Path(out_dir) / ALIGN_FILE
    path.unlink(missing_ok=True)  # never write through a hard link
    module = AlignmentGraph(hf_model, alignment_heads(hf_model)).eval()
    d_model = hf_model.config.d_model
    tokens = torch.tensor([[hf_model.config.decoder_start_token_id] * 4])
    hidden = torch.zeros(1, 8, d_model)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (tokens, hidden), str(path), input_names=["tokens", "hidden"],
                          output_names=["scores", "logits"],
                          dynamic_axes={"tokens": {1: "tokens"}, "hidden": {1: "frames"},
                                        "scores": {1: "tokens", 2: "frames"}, "logits": {0: "tokens"}},
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    onnx.checker.check_model(str(path))
    return path
