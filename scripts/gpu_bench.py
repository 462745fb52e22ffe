"""GPU benchmark of the product's path: its CUDA-graph runner and decode loop; real Whisper dims, random weights.

For each model size, batch size and prune config, the runner `trt-transcribe --device cuda` uses
(`runners.factory.make_runner("pytorch", device="cuda")`: the `CudaGraphRunner`, FP16, CUDA graphs)
over a randomly initialised model of that size, and the product's decode loop
(`window_decode.decode_windows`: greedy, Whisper's logit rules) on random log-mel windows, with
end-of-text suppressed so that every window decodes exactly `--steps` tokens (the same work for
every config; the guard is off: random weights loop). Timed through `whisper_eas.benchmark.timing`:
the encoder (`runner.encode`) and one captured decoder step per call (`torch.utils.benchmark`), the
whole decode end to end (perf_counter, CUDA synchronized; warm-up, repeats, median and spread).
Also the same step eager (the runner with graphs off) and against the bytes-moved floor (weights
and caches read once per step over the measured copy bandwidth). Dense and sparse are measured one
after the other in one run.

Random weights: every dimension of the named size except the vocabulary, which is tiny.en's
(English-only: no language pass), so the tokenizer is tiny.en's `tokenizer.json` (`--tokenizer`;
default: the embedded tiny.en's, which needs its weights converted once).

    PYTHONPATH=src python scripts/gpu_bench.py --out results.json [--models large-v3-turbo,large-v3,...]
    PYTHONPATH=src python scripts/gpu_bench.py --device cpu --models test --batches 1,2 --steps 4 --out x.json
    (the second: a check of the script on a CPU: float32, the same runner class run eagerly)
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path

import torch

from whisper_eas.benchmark.timing import Samples, device_sync, per_call, take_turns
from whisper_eas.config import PruneConfig
from whisper_eas.decoding import DecodingOptions
from whisper_eas.guard import GuardOptions
from whisper_eas.runners.cuda_runner import CudaGraphRunner, row_bucket
from whisper_eas.tokenizer import WhisperTokenizer
from whisper_eas.window_decode import SHORT_FORM, decode_windows, window_requests

DEVICE, DTYPE = "cuda", torch.float16  # --device cpu switches to cpu/float32 to check the script
TINY_EN_VOCAB = 51864

DIMS = {
    "tiny": dict(d_model=384, encoder_layers=4, decoder_layers=4, heads=6, n_mels=80, vocab=51865),
    "base": dict(d_model=512, encoder_layers=6, decoder_layers=6, heads=8, n_mels=80, vocab=51865),
    "small": dict(d_model=768, encoder_layers=12, decoder_layers=12, heads=12, n_mels=80, vocab=51865),
    "large-v3": dict(d_model=1280, encoder_layers=32, decoder_layers=32, heads=20, n_mels=128, vocab=51866),
    "large-v3-turbo": dict(d_model=1280, encoder_layers=32, decoder_layers=4, heads=20, n_mels=128, vocab=51866),
    "test": dict(d_model=64, encoder_layers=2, decoder_layers=2, heads=2, n_mels=80, vocab=51865),  # --device cpu check
}


def build(name: str):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    d = DIMS[name]
    config = WhisperConfig(  # tiny.en's vocabulary for every size (see the module docstring)
        vocab_size=TINY_EN_VOCAB, num_mel_bins=d["n_mels"], d_model=d["d_model"],
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


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in bytes/s (bytes read + written)."""
    a = torch.empty(2 << 30 if DEVICE == "cuda" else 1 << 26, dtype=torch.uint8, device=DEVICE)
    b = torch.empty_like(a)
    return 2 * a.numel() / per_call(lambda: b.copy_(a), min_run_time=0.5).median


def product_runner(model, config: PruneConfig | None, tokenizer: WhisperTokenizer, head: str = "model",
                   use_graphs: bool = True) -> CudaGraphRunner:
    """The runner `trt-transcribe --device cuda` builds, over the random `model`: through the
    factory on a GPU; on a CPU (a check of this script) the same class, run eagerly."""
    options = dict(hf_model=model, tokenizer=tokenizer, head_precision=head)
    if DEVICE == "cpu":
        return CudaGraphRunner("random", config, device="cpu", dtype=DTYPE, use_graphs=False, **options)
    from whisper_eas.runners.factory import make_runner

    runner = make_runner("pytorch", "random", config, device=DEVICE, load=False, **options)
    if not isinstance(runner, CudaGraphRunner):
        raise TypeError(f"make_runner gave {type(runner).__name__}, not the CUDA-graph runner")
    runner.use_graphs = use_graphs
    return runner.load()


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


def decode_options(tokenizer: WhisperTokenizer, steps: int) -> DecodingOptions:
    """Greedy, exactly `steps` tokens per window: end-of-text suppressed beside Whisper's usual set."""
    return DecodingOptions(sample_len=steps, suppress_tokens=(tokenizer.eot, *tokenizer.non_speech_tokens()))


def measure(runner: CudaGraphRunner, eager: CudaGraphRunner, mel: torch.Tensor, steps: int,
            bandwidth: float) -> dict:
    """Encoder, end-to-end decode and one decoder step of `runner` on `mel`."""
    options, guard = decode_options(runner.tokenizer, steps), GuardOptions(enabled=False)
    requests = window_requests(mel, options)
    turns = take_turns({"e2e": lambda _: decode_windows(runner, requests, options, SHORT_FORM, guard)}, [None],
                       repeats=5, warmup=[None], sync=device_sync(DEVICE), log=None)["e2e"]
    lengths = {len(outcome.result.tokens) for outcome in turns.last[0]}
    if lengths != {steps}:  # the same work for every config, or the comparison means nothing
        raise RuntimeError(f"windows decoded {sorted(lengths)} tokens, not {steps}")
    e2e = turns.totals
    encoded = runner.encode(mel)
    encoder = per_call(lambda: runner.encode(mel))
    rows, frames = row_bucket(mel.shape[0]), encoded.n_kept
    with torch.inference_mode():  # as the runner's decoder sessions run
        graph, eager_graph = runner.step_graph(rows, frames, 64), eager.step_graph(rows, frames, 64)
        graph.pos.fill_(3)  # a step after the prompt, as in decoding
        eager_graph.pos.fill_(3)
        step, step_eager = per_call(graph.run), per_call(eager_graph.run)
    floor_ms = decoder_bytes(runner.model, rows, frames, 64) / bandwidth * 1e3
    return {"kept_frames": frames, "encoder_ms": encoder.ms(), "e2e_ms": e2e.ms(), "decode_steps": steps,
            "step_graph_ms": step.ms()["median_ms"], "step_eager_ms": step_eager.ms()["median_ms"],
            "step_floor_ms": floor_ms}


def bench_model(name: str, batches: list[int], steps: int, extra: list[PruneConfig], bandwidth: float,
                rows: list[dict], log, heads: list[str] = (), variants: bool = True, tokenizer_path: Path | None = None) -> None:
    """Append one row per (batch, config, head precision) to `rows` as soon as it is measured."""
    model = build(name)
    cfg = model.config
    tokenizer = WhisperTokenizer.from_file(tokenizer_path, multilingual=False)
    for batch in batches:
        dense = None
        for config, head in ((c, h) for c in configs_for(name, extra, variants)
                             if c is None or c.layer <= cfg.encoder_layers
                             for h in ("model", *heads) if h == "model" or (c is not None and c.uses_attention)):
            label = ("dense" if config is None else config.format()) + ("" if head == "model" else f" {head}head")
            mel = torch.randn(batch, cfg.num_mel_bins, 3000, device=DEVICE, generator=torch.Generator(DEVICE).manual_seed(0))
            try:
                runner = product_runner(model, config, tokenizer, head)
                eager = product_runner(model, config, tokenizer, head, use_graphs=False)
                row = {"model": name, "batch": batch, "config": label, **measure(runner, eager, mel, steps, bandwidth)}
                if config is None:
                    dense = row
                row["encoder_speedup"] = dense["encoder_ms"]["median_ms"] / row["encoder_ms"]["median_ms"] if dense else None
                row["e2e_speedup"] = dense["e2e_ms"]["median_ms"] / row["e2e_ms"]["median_ms"] if dense else None
                rows.append(row)
                log(row)
                del runner, eager
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
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu: a check of the script (float32, the runner run eagerly; use --models test)")
    ap.add_argument("--cpu-dry-run", action="store_true", help="the same as --device cpu")
    ap.add_argument("--tokenizer", type=Path, help="tiny.en's tokenizer.json (default: the embedded tiny.en's)")
    ap.add_argument("--heads", default="", help="also time each attention config with the encoder up to the "
                    "pruning layer from float32 copies: float32 and/or tf32, comma-separated")
    args = ap.parse_args()
    if args.cpu_dry_run or args.device == "cpu":
        global DEVICE, DTYPE
        DEVICE, DTYPE = "cpu", torch.float32
    tokenizer = args.tokenizer
    if tokenizer is None:
        from whisper_eas.checkpoints.registry import resolve_model

        tokenizer = resolve_model("tiny.en") / "tokenizer.json"
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
                    info["copy_bandwidth_GBps"] * 1e9, out["rows"], log, [h for h in args.heads.split(",") if h],
                    not args.no_variants, tokenizer)
        print(f"# {name} done at {time.time() - t0:.0f}s", flush=True)
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
