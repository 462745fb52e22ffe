"""Frame scoring and selection: which encoder frames survive, in time order.

Pure tensor functions built from ops that every runtime has (matmul, softmax, TopK, CumSum,
Gather, comparisons), so the same code runs in the PyTorch patch, traces into the standard-op ONNX
prune graph, and runs under CUDA graphs. Shapes: B batch, T frames, D width, K kept.

Which frames survive must not depend on the activations' precision: scores, selection and the
merge's sums are computed in float32 and cell boundaries in integers, also when the model runs in
FP16 (whose 11-bit mantissa ties near-equal scores and rounds frame-index sums above 2048 to even
numbers: neighbouring merge boundaries coincided, emptying cells into 0/0 = NaN windows).
"""

from __future__ import annotations

import torch

from whisper_eas.config import ENCODER_FRAMES_PER_SECOND, PruneConfig

ONSET_LEAD = 5  # onset_keep starts this many encoder frames (0.1 s) before the detected speech onset


def attention_probs(q: torch.Tensor, k: torch.Tensor, n_heads: int, query_stride: int = 1) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh)) per head, [B, H, T / query_stride, T], from projections [B, T, D].

    Scaled as HF Whisper scales (queries before the product), so with `query_stride=1` these are
    the layer's own attention probabilities (the exported scoring block reuses them).
    """
    b, t, d = k.shape
    head_dim = d // n_heads
    q = q[:, ::query_stride] * head_dim**-0.5
    qh = q.reshape(b, -1, n_heads, head_dim).transpose(1, 2)  # [B, H, Tq, Dh]
    kh = k.reshape(b, t, n_heads, head_dim).transpose(1, 2)  # [B, H, T, Dh]
    return torch.softmax(qh @ kh.transpose(-1, -2), dim=-1)


def scores_from_probs(probs: torch.Tensor, scoring: str = "mean", query_stride: int = 1) -> torch.Tensor:
    """Attention each frame receives, [B, T], from probabilities [B, H, Tq, T] (query rows strided)."""
    t = probs.shape[-1]
    if scoring == "mean_noself":
        tq = probs.shape[-2]
        rows = torch.arange(tq, device=probs.device)
        self_mask = torch.zeros(tq, t, dtype=probs.dtype, device=probs.device)
        self_mask[rows, rows * query_stride] = 1.0
        probs = probs * (1.0 - self_mask)
    per_head = probs.mean(dim=-2)  # [B, H, T]
    if scoring == "max_head":
        per_head = per_head / per_head.sum(dim=-1, keepdim=True)
        return per_head.amax(dim=1)
    return per_head.mean(dim=1)


def attention_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    n_heads: int,
    scoring: str = "mean",
    query_stride: int = 1,
) -> torch.Tensor:
    """Attention each frame receives, [B, T], from the layer's query/key projections [B, T, D].

    Only every `query_stride`-th query row is materialized, which keeps the cost of the explicit
    softmax (the one place attention probabilities exist) a fraction of the fused layer's.
    Always float32, so the selection does not depend on the model's precision (only the strided
    query rows are copied).
    """
    probs = attention_probs(q[:, ::query_stride].float(), k.float(), n_heads)
    return scores_from_probs(probs, scoring, query_stride)


def adaptive_keep_counts(scores: torch.Tensor, config: PruneConfig) -> torch.Tensor:
    """Per window, the fewest frames holding `mass` of the attention above the window's median. [B]

    Raw attention is diffuse: padding and silence frames each receive little, but together most
    of it, so a plain mass rule keeps nearly every frame. Measured above the median frame's level,
    such background frames hold no mass, and the count follows how much of the window is speech.
    """
    t = int(scores.shape[-1])  # static (1500) in exported graphs too
    ordered = torch.sort(scores, dim=-1, descending=True).values
    excess = (ordered - ordered[:, t // 2 : t // 2 + 1]).clamp_min(0.0)
    share = torch.cumsum(excess, dim=-1) / excess.sum(dim=-1, keepdim=True).clamp_min(1e-30)
    counts = (share < config.mass).sum(dim=-1) + 1
    low = max(1, int(round(config.min_keep * t)))
    high = max(low, int(round(config.max_keep * t)))
    return counts.clamp(low, high)


def _uniform_indices(b: int, t: int, k: int, device: torch.device) -> torch.Tensor:
    """Centred stride: frame floor((j + 0.5) * T / K) for j in 0..K-1."""
    idx = ((torch.arange(k, device=device, dtype=torch.float64) + 0.5) * (t / k)).floor().long()
    return idx.clamp_(0, t - 1).unsqueeze(0).expand(b, k)


def _coverage_marks(scores: torch.Tensor, counts: torch.Tensor, uniform_floor: float) -> torch.Tensor:
    """1.0 for frames that receive a quantile of the attention+uniform density, else 0.0. [B, T]

    The density mixes the normalized attention with a uniform floor; `counts[b]` targets sit at
    equal quantiles of it. A frame whose density spans several targets is marked once; the unused
    budget goes to the best-scored unmarked frames in `select_indices`.
    """
    t = scores.shape[-1]
    attention = scores / scores.sum(dim=-1, keepdim=True)
    density = uniform_floor / t + (1.0 - uniform_floor) * attention
    cdf = torch.cumsum(density.double(), dim=-1)
    cdf = cdf / cdf[:, -1:]
    k = counts.to(torch.float64).unsqueeze(-1)
    reached = torch.floor(cdf * k + 0.5)  # targets (j + 0.5) / K at or below cdf_t
    before = torch.cat([torch.zeros_like(reached[:, :1]), reached[:, :-1]], dim=-1)
    return (reached > before).to(scores.dtype)


def select_indices(
    scores: torch.Tensor | None, config: PruneConfig, b: int, t: int, device, protect: torch.Tensor | None = None
) -> torch.Tensor:
    """Indices of kept frames, ascending (time order), [B, K].

    Fixed ratios keep K = round(keep_ratio * T). Adaptive configs keep a per-sample count; a batch
    keeps its largest count for every sample (the extra frames are the next best by the strategy).
    `protect` [B, T] (bool): frames kept before any other (the speech onset, `onset_keep`), within K.
    """
    if config.adaptive:
        counts = adaptive_keep_counts(scores, config)
        # traced for ONNX, K stays a tensor so the graph's TopK count follows the input
        k = counts.max() if torch.jit.is_tracing() else int(counts.max())
    else:
        k = config.keep_count(t)
        counts = torch.full((b,), k, device=device, dtype=torch.long)
    if config.strategy == "uniform":
        return _uniform_indices(b, t, k, device)
    if config.strategy == "truncate":
        return torch.arange(k, device=device).unsqueeze(0).expand(b, k)
    ranking = scores / scores.amax(dim=-1, keepdim=True).clamp_min(1e-30)  # in [0, 1]
    if config.strategy == "coverage":
        ranking = ranking + 2.0 * _coverage_marks(scores, counts, config.uniform_floor)
    if protect is not None:
        ranking = ranking + 4.0 * protect.to(ranking.dtype)
    top = torch.topk(ranking, k, dim=-1).indices
    return torch.sort(top, dim=-1).values


def gather_frames(hidden: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """hidden [B, T, D] at idx [B, K] -> [B, K, D]."""
    return torch.gather(hidden, 1, idx.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


def merge_frames(hidden: torch.Tensor, idx: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Each kept frame becomes the mean of the frames nearest to it in time (its Voronoi cell).

    No frame's content vanishes; the kept frame's own position embedding stays dominant because
    its neighbours carry nearly the same position. Frame t lies beyond the boundary between kept
    frames a < b when 2t > a + b (integers: exact in any precision; a tie joins the earlier cell).
    Sums accumulate in float32 (or wider) and the result returns in the activations' dtype.
    `valid` [B, T] (bool): only these frames are merged (a speech region inside a whole window:
    the traced form of `_prune_regions`); the others add zero to their cell and count for nothing.
    """
    b, t, d = hidden.shape
    twice_bounds = idx[:, 1:] + idx[:, :-1]  # [B, K-1] twice the cell boundaries
    twice_frames = 2 * torch.arange(t, device=hidden.device, dtype=idx.dtype)
    cell = (twice_frames.view(1, t, 1) > twice_bounds.unsqueeze(1)).sum(dim=-1)  # [B, T] cell of each frame
    values = hidden.to(torch.promote_types(hidden.dtype, torch.float32))
    ones = torch.ones_like(cell, dtype=values.dtype)
    if valid is not None:
        values = torch.where(valid.unsqueeze(-1), values, torch.zeros_like(values))
        ones = valid.to(values.dtype)
    sums = torch.zeros(b, idx.shape[1], d, dtype=values.dtype, device=hidden.device)
    sums = sums.scatter_add(1, cell.unsqueeze(-1).expand(-1, -1, d), values)
    sizes = torch.zeros(b, idx.shape[1], dtype=values.dtype, device=hidden.device)
    sizes = sizes.scatter_add(1, cell, ones)
    if valid is not None:  # a kept frame is valid, so its cell has >= 1; guards rows fed past their region
        sizes = sizes.clamp_min(1.0)
    return (sums / sizes.unsqueeze(-1)).to(hidden.dtype)


def speech_bounds(mel: torch.Tensor, level: float = 0.35) -> torch.Tensor:
    """Per window, the encoder frames where speech starts and where the audio content ends, [B, 2].

    Content ends after the last non-padding column (`content_frames`). Speech starts at the first
    mel frame whose mean log-mel rises `level` of the way from the content's quiet floor (10th
    percentile) to its loud level (95th percentile): a leading pause is not speech.
    """
    columns = mel.float()
    ends = content_frames(mel)
    starts = torch.zeros_like(ends)
    for i in range(columns.shape[0]):
        content = int(ends[i]) * 2
        if content <= 0:
            continue
        energy = columns[i, :, :content].mean(dim=0)
        low, high = torch.quantile(energy, 0.10), torch.quantile(energy, 0.95)
        loud = (energy > low + level * (high - low)).nonzero().flatten()
        starts[i] = int(loud.min()) // 2 if loud.numel() else 0
    return torch.stack([starts, ends], dim=-1)


def onset_mask(bounds: torch.Tensor, config: PruneConfig, t: int) -> torch.Tensor | None:
    """[B, T] bool: the first `onset_keep` seconds of speech (from a little before it starts)."""
    if config.onset_keep <= 0:
        return None
    frames = torch.arange(t, device=bounds.device).unsqueeze(0)
    start = (bounds[:, :1] - ONSET_LEAD).clamp_min(0)
    return (frames >= start) & (frames < bounds[:, :1] + int(round(config.onset_keep * ENCODER_FRAMES_PER_SECOND)))


def content_frames(mel: torch.Tensor) -> torch.Tensor:
    """Encoder frames holding audio, per window [B], from log-mel features [B, n_mels, 3000].

    Padding is digital silence: its log-mel columns sit at the clamp floor in every bin (a padded
    clip) or are zero (a long-form file's last window), so a column whose bins are all equal is
    padding, and speech never has 80 equal bins. Content ends after the last unequal column;
    two mel frames make one encoder frame.
    """
    columns = mel.float()
    varies = (columns.amax(dim=1) != columns.amin(dim=1)).to(torch.long)  # [B, 3000]
    n = varies.shape[-1]
    positions = torch.arange(1, n + 1, device=mel.device)
    last = (varies * positions).amax(dim=-1)  # one past the last varying column, 0 if none
    return torch.div(last + 1, 2, rounding_mode="floor")


def prune_hidden(
    hidden: torch.Tensor, scores: torch.Tensor | None, config: PruneConfig, bounds: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a config's selection: (kept hidden [B, K, D], kept frame indices [B, K]).

    `bounds` [B, 2] (`speech_bounds` of the window's features) serves the configs that need the
    audio: with `padding="drop"` the selection runs on each window's speech region only and the
    padding after it is dropped; with `onset_keep` the speech onset's frames are kept first.
    """
    b, t, _ = hidden.shape
    if config.padding == "drop" and bounds is not None:
        if torch.jit.is_tracing():  # the exported prune graph: one static-shape form (`prune_regions_masked`)
            return prune_regions_masked(hidden, scores, config, bounds)
        return _prune_regions(hidden, scores, config, bounds)
    protect = onset_mask(bounds, config, t) if bounds is not None else None
    idx = select_indices(None if scores is None else scores.float(), config, b, t, hidden.device, protect)
    kept = merge_frames(hidden, idx) if config.merge else gather_frames(hidden, idx)
    return kept, idx


def _prune_regions(
    hidden: torch.Tensor, scores: torch.Tensor | None, config: PruneConfig, bounds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per window: select within frames [0, region), merge only within it, drop the rest.

    Counts differ per window; a batch keeps its largest count, and a window with fewer fills the
    rest with frames spread evenly over its dropped padding, kept as they are (the product path,
    `TorchRunner`, encodes such configs one window at a time, so this only serves direct batches).
    """
    b, t, _ = hidden.shape
    outs, idxs = [], []
    for i in range(b):
        region = config.region_frames(int(bounds[i, 1]), t)
        part = hidden[i : i + 1, :region]
        part_scores = None if scores is None else scores[i : i + 1, :region].float()
        protect = onset_mask(bounds[i : i + 1], config, region)
        idx = select_indices(part_scores, config, 1, region, hidden.device, protect)
        outs.append(merge_frames(part, idx) if config.merge else gather_frames(part, idx))
        idxs.append(idx)
    longest = max(int(idx.shape[1]) for idx in idxs)
    for i in range(b):
        missing = longest - int(idxs[i].shape[1])
        if missing:
            start = int(idxs[i][0, -1]) + 1
            fill = torch.linspace(start, t - 1, missing, device=hidden.device).round().long().clamp(start, t - 1)
            fill = torch.unique(fill)
            while fill.numel() < missing:  # only when the padding is shorter than the gap: reuse its last frame
                fill = torch.cat([fill, fill[-1:]])
            outs[i] = torch.cat([outs[i], gather_frames(hidden[i : i + 1], fill.unsqueeze(0))], dim=1)
            idxs[i] = torch.cat([idxs[i], fill.unsqueeze(0)], dim=1)
    return torch.cat(outs), torch.cat(idxs)


def region_lengths(bounds: torch.Tensor, config: PruneConfig, t: int) -> torch.Tensor:
    """`PruneConfig.region_frames` per window as tensor ops, [B] (the traced prune graph's region)."""
    margin = int(round(config.speech_margin * ENCODER_FRAMES_PER_SECOND))
    floor = int(round(config.speech_floor * ENCODER_FRAMES_PER_SECOND))
    return (bounds[:, 1].to(torch.long).clamp_min(floor) + margin).clamp(1, t)


def region_keep_counts(region: torch.Tensor, config: PruneConfig) -> torch.Tensor:
    """`PruneConfig.keep_count(region)` per window, [B]: floor(keep_ratio * R + 0.5) in float64."""
    if config.keep_ratio is None:
        raise ValueError("adaptive counts within a speech region do not export; give keep_ratio")
    counts = torch.floor(region.to(torch.float64) * config.keep_ratio + 0.5).to(torch.long).clamp_min(1)
    return torch.minimum(counts, region)


def prune_regions_masked(
    hidden: torch.Tensor, scores: torch.Tensor | None, config: PruneConfig, bounds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`_prune_regions` for the exported graph: the region is a mask over the whole window, the
    count a tensor (K = the batch's largest), so one traced graph serves every audio length.

    For one window (runners feed these graphs a row at a time) it keeps exactly the frames
    `_prune_regions` keeps: scores, density and ranking are those of the region (frames past it
    add zero to every sum, and rank below every region frame), the stride is the region's.
    """
    b, t, _ = hidden.shape
    frames = torch.arange(t, device=hidden.device)
    region = region_lengths(bounds, config, t)
    valid = frames.unsqueeze(0) < region.unsqueeze(1)  # [B, T]
    counts = region_keep_counts(region, config)
    k = counts.max()
    if config.strategy in ("uniform", "truncate"):
        steps = torch.arange(k, device=hidden.device, dtype=torch.float64).unsqueeze(0)  # [1, K]
        if config.strategy == "uniform":
            stride = region.to(torch.float64) / counts.to(torch.float64)
            idx = ((steps + 0.5) * stride.unsqueeze(1)).floor().to(torch.long)
        else:
            idx = steps.to(torch.long).expand(b, -1)
        idx = torch.minimum(idx, (region - 1).unsqueeze(1))
    else:
        s = torch.where(valid, scores.float(), torch.zeros_like(scores, dtype=torch.float32))
        ranking = s / s.amax(dim=-1, keepdim=True).clamp_min(1e-30)
        if config.strategy == "coverage":
            attention = s / s.sum(dim=-1, keepdim=True)
            floor_share = (config.uniform_floor / region.to(torch.float64)).to(torch.float32).unsqueeze(1)
            density = torch.where(valid, floor_share + (1.0 - config.uniform_floor) * attention,
                                  torch.zeros_like(attention))
            cdf = torch.cumsum(density.double(), dim=-1)
            cdf = cdf / cdf[:, -1:]
            reached = torch.floor(cdf * counts.to(torch.float64).unsqueeze(-1) + 0.5)
            before = torch.cat([torch.zeros_like(reached[:, :1]), reached[:, :-1]], dim=-1)
            ranking = ranking + 2.0 * (reached > before).to(ranking.dtype)
        protect = onset_mask(bounds, config, t)
        if protect is not None:
            ranking = ranking + 4.0 * (protect & valid).to(ranking.dtype)
        ranking = torch.where(valid, ranking, torch.full_like(ranking, -1.0))
        idx = torch.sort(torch.topk(ranking, k, dim=-1).indices, dim=-1).values
    kept = merge_frames(hidden, idx, valid) if config.merge else gather_frames(hidden, idx)
    return kept, idx
