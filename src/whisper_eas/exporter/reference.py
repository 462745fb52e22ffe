"""PyTorch reference for every exported graph: the feeds each graph gets and the outputs expected.

The reference is the PyTorch backend itself, not the traced modules: the Hugging Face encoder
with the sparsification hooks (`sparsify.py`), `selection.prune_hidden`, and the explicit-cache
decoder (`decoder_step.py`). Each graph is fed the reference's own intermediate tensors, so an
error is pinned to the graph that makes it instead of piling up along the chain.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import nn

from whisper_eas.config import PruneConfig
from whisper_eas.decoder_step import DecoderCrossKV, DecoderStep, empty_self_cache
from whisper_eas.exporter.graph_specs import SPEECH_BOUNDS
from whisper_eas.selection import attention_scores, prune_hidden, speech_bounds
from whisper_eas.sparsify import block_output, find_encoder, sparsified

Feed = dict[str, np.ndarray]
Case = tuple[Feed, Feed]  # (inputs, expected outputs) of one graph for one iteration


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


@contextmanager
def _split_point(model: nn.Module, layer: int) -> Iterator[dict[str, torch.Tensor]]:
    """Capture the hidden state after block `layer` (0: the stem output) and that block's q/k."""
    encoder = find_encoder(model)
    seen: dict[str, torch.Tensor] = {}

    def keep(key):
        return lambda _m, _i, out: seen.__setitem__(key, block_output(out))

    if layer == 0:
        handles = [encoder.layers[0].register_forward_pre_hook(lambda _m, args: seen.__setitem__("hidden", args[0]))]
    else:
        block = encoder.layers[layer - 1]
        handles = [
            block.register_forward_hook(keep("hidden")),
            block.self_attn.q_proj.register_forward_hook(keep("q")),
            block.self_attn.k_proj.register_forward_hook(keep("k")),
        ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@torch.inference_mode()
def encoder_cases(
    model: nn.Module, config: PruneConfig | None, mel: torch.Tensor
) -> tuple[dict[str, Case], torch.Tensor]:
    """Cases for encoder_head, prune, encoder_tail; and the encoder output for the decoder."""
    layer = config.layer if config is not None else 0
    encoder = find_encoder(model)
    with _split_point(model, layer) as seen:  # dense pass: the head's reference outputs
        encoder(mel)
    head = {"head_hidden": _np(seen["hidden"])}
    scores = None
    if config is not None and config.uses_attention:
        scores = attention_scores(seen["q"], seen["k"], encoder.layers[layer - 1].self_attn.num_heads,
                                  config.scoring, config.query_stride)
        head["frame_scores"] = _np(scores)
    cases = {"encoder_head": ({"mel": _np(mel)}, head)}
    if config is None:
        hidden = encoder(mel).last_hidden_state
        cases["encoder_tail"] = ({"tail_input": head["head_hidden"]}, {"encoder_hidden": _np(hidden)})
        return cases, hidden
    feed = dict(head)
    bounds = None
    if config.needs_audio:  # computed on the host from the features, as the runners feed it
        bounds = speech_bounds(mel)
        feed[SPEECH_BOUNDS] = _np(bounds)
    kept, index = prune_hidden(seen["hidden"], scores, config, bounds)
    cases["prune"] = (feed, {"kept_hidden": _np(kept), "kept_index": _np(index)})
    with sparsified(model, config):
        hidden = encoder(mel).last_hidden_state
    cases["encoder_tail"] = ({"tail_input": _np(kept)}, {"encoder_hidden": _np(hidden)})
    return cases, hidden


def _per_layer(prefix: str, stacked: torch.Tensor) -> Feed:
    return {f"{prefix}_{i}": _np(stacked[i]) for i in range(stacked.shape[0])}


@torch.inference_mode()
def decoder_cases(model: nn.Module, hidden: torch.Tensor, prompt: list[int]) -> dict[str, list[Case]]:
    """decoder_cross once; decoder_step twice: the prompt on an empty cache, then one greedy token."""
    cross_k, cross_v = DecoderCrossKV(model)(hidden)
    cross_case = ({"encoder_hidden": _np(hidden)}, {"cross_k": _np(cross_k), "cross_v": _np(cross_v)})
    step = DecoderStep(model)
    cross_feed = {**_per_layer("cross_k", cross_k), **_per_layer("cross_v", cross_v)}
    self_k, self_v = empty_self_cache(model, hidden.shape[0], hidden.device, hidden.dtype)
    tokens = torch.tensor([prompt] * hidden.shape[0])
    offset, cases = 0, []
    for _ in range(2):
        positions = torch.tensor(sorted({0, tokens.shape[1] - 1}))  # the start token's and the last, as decoding asks
        feed = {"tokens": _np(tokens), "offset": np.array(offset, dtype=np.int64), "logit_positions": _np(positions),
                **_per_layer("self_k", self_k), **_per_layer("self_v", self_v), **cross_feed}
        logits, self_k, self_v = step(tokens, torch.tensor(offset), self_k, self_v, cross_k, cross_v,
                                      positions=positions)
        expected = {"logits": _np(logits), **_per_layer("new_self_k", self_k), **_per_layer("new_self_v", self_v)}
        cases.append((feed, expected))
        offset += tokens.shape[1]
        tokens = logits[:, -1:].argmax(dim=-1)
    return {"decoder_cross": [cross_case], "decoder_step": cases}
