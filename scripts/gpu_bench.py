"""GPU fast-path benchmark: FP16, static shapes, CUDA graphs; real Whisper dims, random weights.

For each model size, batch size and prune config: encoder latency and end-to-end latency of a
fixed decode (prompt + N greedy steps, argmax on the device, every step a graph replay), dense
and sparse measured side by side in one run. Also: decoder step eager vs graph, and the step
time against the bytes-moved floor (weights and caches read once per step over the measured
copy bandwidth).

    PYTHONPATH=src python scripts/gpu_bench.py --out results.json [--models tiny,base,small,large-v3,large-v3-turbo]
    (or with whisper-eas installed: python scripts/gpu_bench.py ...)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
from pathlib import Path

import torch

from whisper_eas.config import PruneConfig
from whisper_eas.decoder_step import DecoderCrossKV
from whisper_eas.sparsify import find_encoder
from whisper_eas.static_graphs import GraphedCall, StaticDecoderStep, StaticEncoder, encoder_head

DEVICE, DTYPE = "cuda", torch.float16  # --cpu-dry-run switches to cpu/float32 to check the script

DIMS = {
    "tiny": dict(d_model=384, encoder_layers=4, decoder_layers=4, heads=6, n_mels=80, vocab=51865),
    "base": dict(d_model=512, encoder_layers=6, decoder_layers=6, heads=8, n_mels=80, vocab=51865),
    "small": dict(d_model=768, encoder_layers=12, decoder_layers=12, heads=12, n_mels=80, vocab=51865),
    "large-v3": dict(d_model=1280, encoder_layers=32, decoder_layers=32, heads=20, n_mels=128, vocab=51866),
    "large-v3-turbo": dict(d_model=1280, encoder_layers=32, decoder_layers=4, heads=20, n_mels=128, vocab=51866),
}


def build(name: str):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    d = DIMS[name]
    config = WhisperConfig(
        vocab_size=d["vocab"], num_mel_bins=d["n_mels"], d_model=d["d_model"],
        encoder_layers=d["encoder_layers"], decoder_layers=d["decoder_layers"],
        encoder_attention_heads=d["heads"], decoder_attention_heads=d["heads"],
        encoder_ffn_dim=4 * d["d_model"], decoder_ffn_dim=4 * d["d_model"],
    )
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(DTYPE)
    try:
        with torch.device(DEVICE):
            model = WhisperForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.config._attn_implementation = "sdpa"
    return model.eval()


def timed(fn, repeats: int = 20, warmup: int = 3) -> dict:
    """Median and spread (ms) of `fn` over repeats, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if DEVICE == "cpu":
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in bytes/s (bytes read + written)."""
    a = torch.empty(2 << 30 if DEVICE == "cuda" else 1 << 26, dtype=torch.uint8, device=DEVICE)
    b = torch.empty_like(a)
    t = timed(lambda: b.copy_(a), repeats=10)
    return 2 * a.numel() / (t["median_ms"] / 1e3)


class Decode:
    """Cross k/v, prompt and N greedy steps, all on static buffers; graph replays only."""

    def __init__(self, model, hidden: torch.Tensor, steps: int, prompt: int = 3, graphs: bool = True):
        cfg = model.config
        rows = hidden.shape[0]
        heads, dt = cfg.decoder_attention_heads, DTYPE
        positions = 64 if prompt + steps <= 64 else 448
        shape = (cfg.decoder_layers, rows, heads, positions, cfg.d_model // heads)
        self.tokens = torch.full((rows, 1), 50258, dtype=torch.long, device=DEVICE)
        self.pos = torch.zeros(1, dtype=torch.long, device=DEVICE)
        self.sk, self.sv = torch.zeros(shape, dtype=dt, device=DEVICE), torch.zeros(shape, dtype=dt, device=DEVICE)
        self.steps, self.prompt = steps, prompt
        self.step = StaticDecoderStep(model)
        self.cross = GraphedCall(DecoderCrossKV(model), (hidden,), enabled=graphs)
        ck, cv = self.cross(hidden)
        self.ck, self.cv = ck, cv

        def greedy(tokens, pos, sk, sv, ck, cv):
            logits = self.step(tokens, pos, sk, sv, ck, cv)
            tokens.copy_(logits[:, -1].argmax(-1, keepdim=True))
            pos.add_(1)
            return logits

        self.greedy = GraphedCall(greedy, (self.tokens, self.pos, self.sk, self.sv, ck, cv), enabled=graphs, clone=False)
        self.hidden = hidden

    def run(self, hidden: torch.Tensor | None = None):
        if hidden is not None:
            self.cross(hidden)
        self.pos.zero_()
        for _ in range(self.prompt + self.steps):
            self.greedy(self.tokens, self.pos, self.sk, self.sv, self.ck, self.cv, copy_inputs=False)

    def one_step(self):
        self.pos.fill_(self.prompt)
        self.greedy(self.tokens, self.pos, self.sk, self.sv, self.ck, self.cv, copy_inputs=False)


def decoder_bytes(model, rows: int, frames: int, positions: int) -> int:
    """Bytes a decode step must read at least: decoder weights (minus cross k/v projections),
    the output projection, the cross and self caches."""
    cfg = model.config
    per_layer = sum(p.numel() for n, p in model.model.decoder.layers[0].named_parameters()
                    if "encoder_attn.k_proj" not in n and "encoder_attn.v_proj" not in n)
    weights = per_layer * cfg.decoder_layers + model.proj_out.weight.numel()
    caches = cfg.decoder_layers * rows * cfg.d_model * (2 * frames + 2 * positions)
    return 2 * (weights + caches)


def configs_for(name: str, extra: list[PruneConfig], variants: bool = True) -> list[PruneConfig | None]:
    """The targets' configs and `extra` for every size; strategy variants for tiny/base."""
    core = [
        None,
        PruneConfig(layer=1, keep_ratio=0.5, strategy="coverage", query_stride=8),
        PruneConfig(layer=1, keep_ratio=0.4, strategy="coverage", query_stride=8),
    ]
    if not variants or name not in ("tiny", "base"):
        return core + extra
    return core + [
        PruneConfig(layer=1, keep_ratio=0.5, query_stride=8),
        PruneConfig(layer=1, keep_ratio=0.5, query_stride=1),
        PruneConfig(layer=1, keep_ratio=0.5, strategy="uniform"),
        PruneConfig(layer=1, keep_ratio=0.5, strategy="coverage", query_stride=8, merge=True),
    ] + extra


def encoder_variants(model, config: PruneConfig | None, heads: list[str]):
    """(label suffix, StaticEncoder, input dtype): the whole encoder in FP16, and for each head
    precision in `heads` ("float32", "tf32") the stem and blocks up to the pruning layer from
    float32 copies, as `CudaGraphRunner(head_precision=...)` runs them."""
    yield "", StaticEncoder(model, config).eval(), DTYPE
    for precision in heads:
        head = encoder_head(find_encoder(model), config, precision, DTYPE)
        if head is not None:
            yield f" {precision}head", StaticEncoder(model, config, head).eval(), head.dtype


def bench_model(name: str, batches: list[int], steps: int, extra: list[PruneConfig], bandwidth: float,
                rows: list[dict], log, heads: list[str] = (), variants: bool = True) -> None:
    """Append one row per (batch, config) to `rows` as soon as it is measured."""
    model = build(name)
    cfg = model.config
    for batch in batches:
        dense_e2e = dense_enc = None
        for config, (suffix, module, mel_dtype) in ((c, v) for c in configs_for(name, extra, variants)
                                                    if c is None or c.layer <= cfg.encoder_layers
                                                    for v in encoder_variants(model, c, heads)):
            mel = torch.randn(batch, cfg.num_mel_bins, 3000, device=DEVICE, dtype=mel_dtype,
                              generator=torch.Generator(DEVICE).manual_seed(0))
            label = ("dense" if config is None else config.format()) + suffix
            try:
                encoder = GraphedCall(module, (mel,))
                hidden = encoder(mel)
                enc_t = timed(lambda: encoder(mel, copy_inputs=False), repeats=10)
                decode = Decode(model, hidden, steps)
                e2e_t = timed(lambda: (encoder(mel, copy_inputs=False), decode.run(hidden)), repeats=5, warmup=1)
                step_graph = timed(decode.one_step, repeats=20)
                eager = StaticDecoderStep(model)
                with torch.inference_mode():
                    step_eager = timed(lambda: eager(decode.tokens, decode.pos, decode.sk, decode.sv, decode.ck, decode.cv), repeats=5)
                floor_ms = decoder_bytes(model, batch, hidden.shape[1], decode.sk.shape[3]) / bandwidth * 1e3
                if config is None:
                    dense_e2e, dense_enc = e2e_t["median_ms"], enc_t["median_ms"]
                row = {
                    "model": name, "batch": batch, "config": label, "kept_frames": int(hidden.shape[1]),
                    "encoder_ms": enc_t, "e2e_ms": e2e_t, "decode_steps": steps,
                    "step_graph_ms": step_graph["median_ms"], "step_eager_ms": step_eager["median_ms"],
                    "step_floor_ms": floor_ms,
                    "encoder_speedup": dense_enc / enc_t["median_ms"] if dense_enc else None,
                    "e2e_speedup": dense_e2e / e2e_t["median_ms"] if dense_e2e else None,
                }
                rows.append(row)
                log(row)
                del encoder, decode, eager
            except Exception as error:  # record and go on: one failing config must not cost the run
                rows.append({"model": name, "batch": batch, "config": label, "error": repr(error)})
                log({"model": name, "batch": batch, "config": label, "error": traceback.format_exc(limit=3)})
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
    del model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="large-v3-turbo,large-v3,tiny,base,small")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--extra", default="", help="more configs, every size, comma-separated, in the prune grammar: "
                    "'coverage@4+merge L1 k0.5,attentive L1 k0.4'")
    ap.add_argument("--no-variants", action="store_true", help="skip the tiny/base strategy variants")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpu-dry-run", action="store_true", help="check the script on a CPU (float32, no graphs)")
    ap.add_argument("--heads", default="", help="also time each attention config with the encoder up to the "
                    "pruning layer from float32 copies: float32 and/or tf32, comma-separated")
    args = ap.parse_args()
    if args.cpu_dry_run:
        global DEVICE, DTYPE
        DEVICE, DTYPE = "cpu", torch.float32
    torch.backends.cuda.matmul.allow_tf32 = True
    extra = [PruneConfig.parse(item) for item in args.extra.split(",") if item.strip()]
    info = {"gpu": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu", "torch": torch.__version__,
            "capability": torch.cuda.get_device_capability() if DEVICE == "cuda" else None}
    import transformers

    info["transformers"] = transformers.__version__
    info["copy_bandwidth_GBps"] = copy_bandwidth() / 1e9
    print(json.dumps(info), flush=True)
    out = {"info": info, "rows": []}

    def log(row):
        print(json.dumps(row), flush=True)
        Path(args.out).write_text(json.dumps(out, indent=1))

    t0 = time.time()
    for name in args.models.split(","):
        bench_model(name, [int(b) for b in args.batches.split(",")], args.steps, extra,
                    info["copy_bandwidth_GBps"] * 1e9, out["rows"], log, [h for h in args.heads.split(",") if h], not args.no_variants)
        print(f"# {name} done at {time.time() - t0:.0f}s", flush=True)
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
