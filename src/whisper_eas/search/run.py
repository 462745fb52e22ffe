"""The joint (layer, keep ratio, strategy) search: WER per point, latency side by side, Pareto, choice.

State lives in OUT/state.json (written atomically after every batch and every latency
measurement), so a killed search resumes from what is already there. A point that fails is
recorded with its error and the search goes on.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from whisper_eas.config import SCORINGS, PruneConfig, format_prune, parse_strategy
from whisper_eas.decoding import DecodingOptions
from whisper_eas.errors import ConfigError, WhisperEasError
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.evaluation.stats import pair_transcripts, paired_bootstrap
from whisper_eas.guard import GuardOptions
from whisper_eas.io_utils import atomic_write_json
from whisper_eas.runners.torch_runner import TorchRunner
from whisper_eas.evaluation.evaluate import load_window
from whisper_eas.search.grid import GridPoint, evaluate_grid
from whisper_eas.search.latency import measure_against_dense
from whisper_eas.search.pareto import DEFAULT_BUDGET, choose, holds, pareto_front
from whisper_eas.search.report import write_reports


@dataclass(frozen=True)
class SearchSpec:
    """What to search; stored with the state so a resume can check it is the same search."""

    model: str
    manifest: str
    layers: tuple[int, ...] | None = None  # None: every encoder layer
    keep_ratios: tuple[float, ...] = (0.7, 0.6, 0.5, 0.4, 0.3)
    strategies: tuple[str, ...] = ("attentive", "uniform", "truncate")
    masses: tuple[float, ...] = ()
    min_keep: float = 0.3  # adaptive bounds, share of frames
    max_keep: float = 0.8
    max_wer_increase: float = DEFAULT_BUDGET  # the chooser's budget, WER points (pareto.choose)
    limit: int | None = None
    device: str = "cpu"
    query_stride: int = 1
    scoring: str = "mean"
    latency_windows: int = 6
    latency_repeats: int = 2
    batch_size: int = 8
    guard: bool = True
    latency: bool = True  # False: WER only (no timing phase)
    confirm_manifest: str | None = None  # re-measure the chosen point here (a set nobody tuned on)

    def __post_init__(self) -> None:
        for token in self.strategies:
            if token not in PADDING_TRIMS:
                strategy_fields(token.removesuffix("+drop"))  # ConfigError naming the token and the grammar
        if not self.keep_ratios and not self.masses:
            raise ConfigError("a search needs keep ratios or masses")
        for value in (*self.keep_ratios, *self.masses):
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"keep ratios and masses are shares in (0, 1], got {value!r}")
        if self.layers is not None and any(layer < 1 for layer in self.layers):
            raise ConfigError(f"layers are 1-based, got {self.layers}")
        if self.scoring not in SCORINGS:
            raise ConfigError(f"scoring must be one of {', '.join(SCORINGS)}, got {self.scoring!r}")
        positive = dict(batch_size=self.batch_size, latency_windows=self.latency_windows,
                        latency_repeats=self.latency_repeats, query_stride=self.query_stride)
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit}")

    def configs(self, n_layers: int) -> list[PruneConfig]:
        """Every point: fixed ratios for each strategy, adaptive masses for attention strategies.

        A strategy token is the strategy part of the prune grammar, `name[@stride][+merge]`, e.g.
        `coverage@4+merge`, optionally `+drop` (trailing padding dropped, the ratio applies to the
        speech region); `padtrim` / `padtrim0` are the padding trim with / without its 10 s floor
        (one point per layer). Every point's key is its `PruneConfig.format()`.
        """
        layers = self.layers or tuple(range(1, n_layers + 1))
        out = []
        for layer in layers:
            for token in self.strategies:
                if token in PADDING_TRIMS:  # the baseline: the first max(floor, duration) + 1.28 s of frames
                    out.append(PruneConfig(layer=layer, keep_ratio=1.0, strategy="uniform", padding="drop",
                                           speech_floor=PADDING_TRIMS[token]))
                    continue
                drop = token.endswith("+drop")
                common = dict(layer=layer, **strategy_fields(token.removesuffix("+drop"), self.scoring, self.query_stride))
                if drop:  # ours: trailing padding dropped, the selection within the speech region
                    common.update(padding="drop", speech_floor=PADDING_TRIMS["padtrim"])
                out += [PruneConfig(keep_ratio=k, **common) for k in self.keep_ratios]
                if common["strategy"] in ("attentive", "coverage"):
                    out += [PruneConfig(keep_ratio=None, mass=m, min_keep=self.min_keep, max_keep=self.max_keep, **common)
                            for m in self.masses]
        return out


PADDING_TRIMS = {"padtrim": 10.0, "padtrim0": 0.0}  # token -> speech floor, seconds


def strategy_fields(token: str, scoring: str = "mean", query_stride: int = 1) -> dict:
    """A strategy token of the prune grammar (`config.parse_strategy`), with the search-wide scoring
    and query stride where the token names none; strategies without attention take neither."""
    fields = {"scoring": scoring, "query_stride": query_stride, **parse_strategy(token)}
    if fields["strategy"] in ("uniform", "truncate"):
        return {k: v for k, v in fields.items() if k not in ("scoring", "query_stride")}
    return fields


@dataclass
class SearchState:
    spec: dict
    points: dict[str, dict] = field(default_factory=dict)  # key -> GridPoint state
    latency: dict[str, dict] = field(default_factory=dict)  # key -> SideBySide dict
    errors: dict[str, str] = field(default_factory=dict)  # key -> error message
    failed: dict[str, str] = field(default_factory=dict)  # utterance id -> error


class SearchMismatchError(WhisperEasError, ValueError):
    """OUT already holds a different search."""


def _load_state(out: Path, spec: SearchSpec) -> SearchState:
    path = out / "state.json"
    if not path.exists():
        return SearchState(spec=asdict(spec))
    data = json.loads(path.read_text())
    saved = {k: v for k, v in data["spec"].items() if k not in ("max_wer_increase",)}
    wanted = {k: v for k, v in json.loads(json.dumps(asdict(spec))).items() if k not in ("max_wer_increase",)}
    for key in ("model", "manifest", "limit", "device"):
        if saved.get(key) != wanted.get(key):
            raise SearchMismatchError(f"{path}: holds a search of {key}={saved.get(key)!r}, not {wanted.get(key)!r}; use another --out")
    return SearchState(asdict(spec), data["points"], data["latency"], data["errors"], data.get("failed", {}))


def run_search(spec: SearchSpec, out_dir: str | Path, progress: Callable[[str], None] = print) -> dict:
    """Run (or resume) the search and write results.json, results.csv and pareto.png into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = _load_state(out, spec)
    save = lambda: atomic_write_json(out / "state.json", asdict(state))  # noqa: E731
    runner = TorchRunner(spec.model, device=spec.device)
    utterances = read_manifest(spec.manifest, spec.limit)
    configs = spec.configs(runner.model.config.encoder_layers)
    options = DecodingOptions(language="en" if not runner.tokenizer.multilingual else "en")
    guard = GuardOptions(enabled=spec.guard)

    points = {"dense": GridPoint.from_state(None, state.points["dense"]) if "dense" in state.points else GridPoint(None)}
    for config in configs:
        key = format_prune(config)
        points[key] = GridPoint.from_state(config, state.points[key]) if key in state.points else GridPoint(config)
    started = time.perf_counter()

    def after_batch(done: int, total: int) -> None:
        state.points = {k: p.to_state() for k, p in points.items()}
        save()
        elapsed = time.perf_counter() - started
        progress(f"WER: {done}/{total} utterances x {len(points)} points, {elapsed:.0f}s")

    evaluate_grid(runner, utterances, points, options, guard, spec.batch_size, state.failed, after_batch)
    if spec.latency:
        _measure_latencies(spec, runner, utterances, configs, state, save, options, guard, progress)
    results = summarize(spec, runner.model_name, utterances, points, state)
    if spec.confirm_manifest and results["chosen"]:
        results["confirmation"] = confirm(spec, runner, results["chosen"], out, progress)
    write_reports(results, out)
    return results


def confirm(spec: SearchSpec, runner: TorchRunner, chosen: dict, out: Path,
            progress: Callable[[str], None] = print) -> dict:
    """Re-measure the chosen point and dense on the confirmation set (every utterance; resumable in
    OUT/confirm.json): the paired delta with its interval, overall and per source, and whether the
    point holds by the chooser's rule there too. Nothing is chosen on this set."""
    from whisper_eas.evaluation.stats import compare

    config = PruneConfig.from_dict(chosen["config"])
    path = out / "confirm.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    key = chosen["key"]
    points = {"dense": GridPoint(None), key: GridPoint(config)}
    if saved.get("key") == key:
        points = {k: GridPoint.from_state(points[k].config, v) for k, v in saved["points"].items()}
    utterances = read_manifest(spec.confirm_manifest)
    failed: dict[str, str] = dict(saved.get("failed", {})) if saved.get("key") == key else {}
    save = lambda done=0, total=0: atomic_write_json(path, {  # noqa: E731
        "key": key, "manifest": spec.confirm_manifest, "failed": failed,
        "points": {k: p.to_state() for k, p in points.items()}})
    evaluate_grid(runner, utterances, points, DecodingOptions(language="en"), GuardOptions(enabled=spec.guard),
                  spec.batch_size, failed, lambda done, total: (save(), progress(f"confirm: {done}/{total}")))
    save()
    refs = {u.id: u.text for u in utterances if u.id not in failed}
    result = compare(refs, points["dense"].hyps, points[key].hyps)
    sparsity = points[key].score(refs)["sparsity"]
    return {"manifest": spec.confirm_manifest, "key": key, "sparsity": sparsity, **result,
            "holds": holds(result["all"], spec.max_wer_increase)}


LATENCY_GROUP = 8  # sparse configs timed per dense run


def _measure_latencies(spec, runner, utterances, configs, state, save, options, guard, progress) -> None:
    windows = [load_window(u, runner.n_mels) for u in utterances if u.id not in state.failed][: spec.latency_windows]
    todo = [c for c in configs if format_prune(c) not in state.latency and format_prune(c) not in state.errors]
    started = time.perf_counter()
    for first in range(0, len(todo), LATENCY_GROUP):
        group = todo[first : first + LATENCY_GROUP]
        sparse = [TorchRunner(spec.model, prune=config, device=spec.device, hf_model=runner.model) for config in group]
        measured = measure_against_dense(runner, sparse, windows, options, guard, spec.latency_repeats)
        for config, result in zip(group, measured):  # a failing point is recorded; the search goes on
            if isinstance(result, Exception):
                state.errors[format_prune(config)] = f"{type(result).__name__}: {result}"
            else:
                state.latency[format_prune(config)] = result.to_dict()
        save()
        done = first + len(group)
        eta = (time.perf_counter() - started) / done * (len(todo) - done)
        progress(f"latency: {done}/{len(todo)} points, ETA {eta:.0f}s")


def summarize(spec: SearchSpec, model: str, utterances, points: dict[str, GridPoint], state: SearchState) -> dict:
    refs = {u.id: u.text for u in utterances if u.id not in state.failed}
    dense = points["dense"].score(refs)
    lat = [v for v in state.latency.values()]
    dense_latency = {
        "encoder_ms": _median([v["dense_encoder_ms"] for v in lat]),
        "e2e_ms": _median([v["dense_e2e_ms"] for v in lat]),
    }
    rows = []
    for key, point in points.items():
        if point.config is None:
            continue
        c, score = point.config, point.score(refs)
        paired = paired_bootstrap(pair_transcripts(refs, points["dense"].hyps, point.hyps)).to_dict() if point.hyps else {}
        row = {
            "key": key,
            "strategy": c.strategy + ("+merge" if c.merge else ""),
            "layer": c.layer,
            "keep_ratio": c.keep_ratio,
            "mass": c.mass,
            "scoring": c.scoring,
            "query_stride": c.query_stride,
            "sparsity": score["sparsity"],
            "wer": score["wer"],
            "wer_delta": score["wer"] - dense["wer"],
            "ci_low": paired.get("low"),
            "ci_high": paired.get("high"),
            "better": paired.get("better"),
            "worse": paired.get("worse"),
            "fallbacks": score["fallbacks"],
            "encoder_speedup": state.latency.get(key, {}).get("encoder_speedup"),
            "e2e_speedup": state.latency.get(key, {}).get("e2e_speedup"),
            "latency_ms": state.latency.get(key, {}).get("e2e_ms"),
            "error": state.errors.get(key),
            "config": c.to_dict(),
        }
        rows.append(row)
    return {
        "model": model,
        "manifest": spec.manifest,
        "n_utterances": dense["n_utterances"],
        "n_words": dense["n_words"],
        "failed_utterances": state.failed,
        "dense": {"wer": dense["wer"], "latency_ms": dense_latency},
        "max_wer_increase": spec.max_wer_increase,
        "points": rows,
        "pareto": pareto_front(rows),
        "chosen": choose(rows, spec.max_wer_increase),
        "spec": asdict(spec),
    }


def _median(values: list[float]) -> float | None:
    values = sorted(values)
    return values[len(values) // 2] if values else None
