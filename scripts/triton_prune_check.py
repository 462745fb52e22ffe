"""GPU check of the AttentivePrune plugin's Triton kernel (no TensorRT needed), for docs/tensorrt.md.

For each config and batch: the kernel against `selection.prune_hidden` on the same CUDA tensors
(kept indices equal, largest hidden difference), both timed (CUDA events, median of repeats after
warm-up); then the AOT path: `compile_ptx` (Triton's PTX with its entry cut to the 8 arguments
TensorRT passes), loaded with the CUDA driver and launched the way TensorRT's AOT plugin launch
does (grid (B, ceil(K/BLOCK_J)), inputs, scalars T D K, outputs), compared again. Random hidden
states of large-v3 width and peaked softmax scores.

    PYTHONPATH=src python scripts/triton_prune_check.py --out triton_prune.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import re
import statistics

import torch

from whisper_eas.config import PruneConfig
from whisper_eas.plugins.triton_prune import BLOCK_J, SIGNATURE, KernelPlan, compile_ptx, prune_triton
from whisper_eas.selection import prune_hidden

CONFIGS = [
    PruneConfig(layer=1, keep_ratio=0.4, strategy="coverage", merge=True, query_stride=4),  # tiny.en shipped
    PruneConfig(layer=1, keep_ratio=0.5, strategy="coverage", query_stride=8),
    PruneConfig(layer=1, keep_ratio=0.5),
    PruneConfig(layer=1, keep_ratio=0.3, strategy="coverage", uniform_floor=0.3, merge=True),
]


def _median_ms(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _entry_params(ptx: str) -> int:
    entry = ptx[ptx.index(".entry"):]
    return len(re.findall(r"\.param\s", entry[: entry.index(")")]))


def check(config: PruneConfig, batch: int, width: int) -> dict:
    generator = torch.Generator(device="cuda").manual_seed(batch)
    hidden = torch.randn(batch, 1500, width, device="cuda", generator=generator)
    scores = torch.softmax(4 * torch.randn(batch, 1500, device="cuda", generator=generator), dim=-1)
    kept, index = prune_triton(hidden, scores, config)
    expected_kept, expected_index = prune_hidden(hidden, scores, config)
    return {
        "config": config.format(), "batch": batch, "width": width,
        "index_equal": bool(torch.equal(index, expected_index)),
        "index_mismatches": int((index != expected_index).sum()),
        "max_abs_diff": float((kept - expected_kept).abs().max()),
        "triton_ms": _median_ms(lambda: prune_triton(hidden, scores, config)),
        "torch_ms": _median_ms(lambda: prune_hidden(hidden, scores, config)),
    }


def launch_ptx(ptx: str, name: str, grid: tuple[int, int], threads: int, shared: int, args: list) -> None:
    """cuModuleLoadData + cuLaunchKernel with an explicit argument list, as a TensorRT AOT plugin is launched."""
    cuda = ctypes.CDLL("libcuda.so.1")
    module, function = ctypes.c_void_p(), ctypes.c_void_p()
    for result in (cuda.cuModuleLoadData(ctypes.byref(module), ctypes.c_char_p(ptx.encode() + b"\0")),
                   cuda.cuModuleGetFunction(ctypes.byref(function), module, name.encode())):
        if result != 0:
            raise RuntimeError(f"CUDA driver error {result}")
    holders = [ctypes.c_void_p(a.data_ptr()) if isinstance(a, torch.Tensor) else ctypes.c_int32(a) for a in args]
    params = (ctypes.c_void_p * len(holders))(*[ctypes.cast(ctypes.byref(h), ctypes.c_void_p) for h in holders])
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    result = cuda.cuLaunchKernel(function, grid[0], grid[1], 1, threads, 1, 1, shared, stream, params, None)
    if result != 0:
        raise RuntimeError(f"cuLaunchKernel failed with {result}")
    torch.cuda.synchronize()


def check_aot(config: PruneConfig, batch: int, width: int) -> dict:
    plan = KernelPlan.for_config(config, 1500)
    name, ptx, threads, shared = compile_ptx(plan)
    generator = torch.Generator(device="cuda").manual_seed(7)
    hidden = torch.randn(batch, 1500, width, device="cuda", generator=generator)
    scores = torch.softmax(4 * torch.randn(batch, 1500, device="cuda", generator=generator), dim=-1)
    kept = torch.full((batch, plan.keep, width), float("nan"), device="cuda")
    index = torch.full((batch, plan.keep), -1, dtype=torch.int64, device="cuda")
    count = torch.zeros((), dtype=torch.int32, device="cuda")
    launch_ptx(ptx, name, (batch, -(-plan.keep // BLOCK_J)), threads, shared,
               [hidden, scores, 1500, width, plan.keep, kept, index, count])
    expected_kept, expected_index = prune_hidden(hidden, scores, config)
    return {"config": config.format(), "batch": batch, "kernel": name, "threads": threads, "shared_bytes": shared,
            "ptx_params": _entry_params(ptx), "expected_params": len(SIGNATURE),
            "index_equal": bool(torch.equal(index, expected_index)),
            "max_abs_diff": float((kept - expected_kept).abs().max()), "count": int(count)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    import triton

    rows = [check(config, batch, args.width) for config in CONFIGS for batch in (1, 16)]
    aot = [check_aot(config, 16, args.width) for config in (CONFIGS[0], CONFIGS[2])]
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "rows": rows, "aot": aot}
    for row in rows + aot:
        print(json.dumps(row))
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
