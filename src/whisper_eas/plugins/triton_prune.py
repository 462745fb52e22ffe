"""Attentive frame pruning as one Triton kernel: the ahead-of-time body of the TensorRT plugin.

Same selection as `selection.prune_hidden` for fixed keep counts and the `attentive` and `coverage`
strategies, with or without `merge`; adaptive counts (a data-dependent length) stay on the
plugin's Python implementation. Program (b, j) recomputes the selection of window b (one sort of
the padded score row) and writes kept frames j*BLOCK_J .. +BLOCK_J, so one launch needs no scratch
memory: every program writes the window's full index row (identical values), waits on a barrier,
and reads back the positions it gathers.

Selection as in `selection.py`: coverage marks frames where the quantile targets of the
attention+uniform density land (float64 cumulative sum), then the best-scored unmarked frames
fill the budget (`ranking = score/max + 2*mark`, so marked frames always win); attentive is that
with no marks. Frames are compared by raw score (the order of score/max), ties go to the earlier
frame (torch.topk leaves ties unspecified). The float64 scan sums in a different order than
torch's, so a coverage mark can differ only where a target lands within float64 rounding of a
frame boundary.

Requires `triton` (it ships with CUDA builds of PyTorch). The AOT path follows NVIDIA's
`tensorrt.plugin` Triton samples: TensorRT launches the PTX entry with inputs, scalars, outputs.
Recent Triton releases append implicit scratch-pointer parameters to every kernel; this kernel
never reads them, so `compile_ptx` drops them from the entry (and refuses if a Triton version
ever makes the kernel use them). The kernel has run on a GPU directly and through that PTX; it
has not run inside a TensorRT engine on the project's machines (see docs/tensorrt.md).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from whisper_eas.config import PruneConfig
from whisper_eas.errors import ConfigError
from whisper_eas.plugins.ptx import strip_implicit_params

BLOCK_J = 32  # kept frames per program
BLOCK_D = 64  # hidden width per tile


@triton.jit
def _coverage_marks(s, valid, T, K, BASE: tl.constexpr, SCALE: tl.constexpr, BLOCK_T: tl.constexpr):
    """`selection._coverage_marks` for one window: 1 where a quantile target lands, else 0."""
    t = tl.arange(0, BLOCK_T)
    attention = tl.math.div_rn(s, tl.sum(s, axis=0))
    density = tl.where(valid, BASE + SCALE * attention, 0.0).to(tl.float64)
    cdf = tl.cumsum(density, axis=0)
    last = tl.sum(tl.where(t == T - 1, cdf, 0.0), axis=0)
    k = K.to(tl.float64)
    reached = tl.floor(cdf / last * k + 0.5)
    before = tl.floor((cdf - density) / last * k + 0.5)
    return valid & (reached > before)


@triton.jit
def _select(s, valid, T, K, COVERAGE: tl.constexpr, BASE: tl.constexpr, SCALE: tl.constexpr,
            BLOCK_T: tl.constexpr):
    """Keep mask of exactly K frames: marked frames, then the best unmarked scores (ties: earlier)."""
    t = tl.arange(0, BLOCK_T)
    if COVERAGE:
        marked = _coverage_marks(s, valid, T, K, BASE, SCALE, BLOCK_T)
    else:
        marked = t < 0
    need = K - tl.sum(marked.to(tl.int32), axis=0)
    key = tl.where(valid, tl.where(marked, -1.0, s), -2.0)  # scores are >= 0
    ordered = tl.sort(key, dim=0, descending=True)
    threshold = tl.sum(tl.where(t == need - 1, ordered, 0.0), axis=0)
    above = key > threshold
    tied = key == threshold
    room = need - tl.sum(above.to(tl.int32), axis=0)
    chosen = above | (tied & (tl.cumsum(tied.to(tl.int32), axis=0) <= room))
    return marked | (chosen & (need > 0))


@triton.jit
def attentive_prune_kernel(
    hidden_ptr, scores_ptr,  # inputs: [B, T, D] float32, [B, T] float32
    T, D, K,  # scalars (int32)
    out_hidden_ptr, out_index_ptr, count_ptr,  # outputs: [B, K, D] float32, [B, K] int64, [] int32
    COVERAGE: tl.constexpr, MERGE: tl.constexpr, BASE: tl.constexpr, SCALE: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    j0 = tl.program_id(1) * BLOCK_J
    t = tl.arange(0, BLOCK_T)
    valid = t < T
    s = tl.load(scores_ptr + b * T + t, mask=valid, other=0.0)
    keep = _select(s, valid, T, K, COVERAGE, BASE, SCALE, BLOCK_T)
    position = tl.cumsum(keep.to(tl.int32), axis=0) - 1
    index_row = out_index_ptr + b * K
    tl.store(index_row + position, t.to(tl.int64), mask=keep)  # every program writes the same row
    tl.debug_barrier()
    if (tl.program_id(0) == 0) & (tl.program_id(1) == 0):
        tl.store(count_ptr, K)
    j = j0 + tl.arange(0, BLOCK_J)
    in_range = j < K
    p = tl.load(index_row + j, mask=in_range, other=0, cache_modifier=".cg")
    if MERGE:  # cell of kept frame j: frames nearer to p_j than to its neighbours (ties: earlier cell)
        prev = tl.load(index_row + j - 1, mask=in_range & (j > 0), other=0, cache_modifier=".cg")
        nxt = tl.load(index_row + j + 1, mask=j + 1 < K, other=0, cache_modifier=".cg")
        lo = tl.where(j > 0, (prev + p) // 2 + 1, 0)
        hi = tl.where(j + 1 < K, (p + nxt) // 2, T - 1)
    else:
        lo = p
        hi = p
    size = tl.where(in_range, hi - lo + 1, 0)
    longest = tl.max(size, axis=0)
    for d0 in range(0, D, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)
        columns = d[None, :] < D
        total = tl.zeros((BLOCK_J, BLOCK_D), dtype=tl.float32)
        for offset in range(0, longest):
            rows = lo + offset
            mask = (in_range & (offset < size))[:, None] & columns
            total += tl.load(hidden_ptr + (b * T + rows)[:, None] * D + d[None, :], mask=mask, other=0.0)
        if MERGE:
            total = tl.math.div_rn(total, tl.maximum(size, 1).to(tl.float32)[:, None])
        tl.store(out_hidden_ptr + (b * K + j)[:, None] * D + d[None, :], total, mask=in_range[:, None] & columns)


@dataclass(frozen=True)
class KernelPlan:
    """Compile-time constants and launch shape of the kernel for one config and window length."""

    coverage: bool
    merge: bool
    base: float  # uniform_floor / T, the density's uniform part
    scale: float  # 1 - uniform_floor
    block_t: int
    keep: int

    @classmethod
    def for_config(cls, config: PruneConfig, n_frames: int) -> "KernelPlan":
        if config.adaptive or config.strategy not in ("attentive", "coverage"):
            raise ConfigError(f"the Triton prune kernel handles fixed attentive/coverage configs, not {config.format()}")
        floor = config.uniform_floor
        return cls(config.strategy == "coverage", config.merge, floor / n_frames, 1.0 - floor,
                   triton.next_power_of_2(n_frames), config.keep_count(n_frames))

    def constexprs(self) -> dict[str, object]:
        return {"COVERAGE": self.coverage, "MERGE": self.merge, "BASE": self.base, "SCALE": self.scale,
                "BLOCK_T": self.block_t, "BLOCK_J": BLOCK_J, "BLOCK_D": BLOCK_D}

    @property
    def j_blocks(self) -> int:
        return triton.cdiv(self.keep, BLOCK_J)


def prune_triton(hidden: torch.Tensor, scores: torch.Tensor, config: PruneConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the kernel directly (tests, and the same math TensorRT embeds): (kept [B,K,D], index [B,K])."""
    b, t, d = hidden.shape
    plan = KernelPlan.for_config(config, t)
    hidden, scores = hidden.float().contiguous(), scores.float().contiguous()
    kept = torch.empty(b, plan.keep, d, dtype=torch.float32, device=hidden.device)
    index = torch.empty(b, plan.keep, dtype=torch.int64, device=hidden.device)
    count = torch.empty((), dtype=torch.int32, device=hidden.device)
    attentive_prune_kernel[(b, plan.j_blocks)](hidden, scores, t, d, plan.keep, kept, index, count,
                                                **plan.constexprs())
    return kept, index


SIGNATURE = {
    "hidden_ptr": "*fp32", "scores_ptr": "*fp32", "T": "i32", "D": "i32", "K": "i32",
    "out_hidden_ptr": "*fp32", "out_index_ptr": "*i64", "count_ptr": "*i32",
}


def compile_ptx(plan: KernelPlan) -> tuple[str, str, int, int]:
    """(kernel name, PTX with TensorRT's parameter list, threads per block, shared memory bytes), current GPU."""
    constants = plan.constexprs()
    signature = {**SIGNATURE, **{name: "constexpr" for name in constants}}
    parameters = inspect.signature(triton.compiler.ASTSource).parameters  # `constants` before Triton 3.4
    keyword = "constexprs" if "constexprs" in parameters else "constants"
    source = triton.compiler.ASTSource(fn=attentive_prune_kernel, signature=signature, **{keyword: constants})
    compiled = triton.compile(source)
    ptx = strip_implicit_params(compiled.asm["ptx"], keep=len(SIGNATURE))
    return compiled.metadata.name, ptx, compiled.metadata.num_warps * 32, compiled.metadata.shared
