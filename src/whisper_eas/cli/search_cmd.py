"""`whisper-eas search`: joint (layer, keep ratio, strategy) search with a Pareto report."""

from __future__ import annotations

from pathlib import Path

import click

from whisper_eas.cli.common import friendly_errors, model_option
from whisper_eas.config import SCORINGS


def _floats(text: str | None) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip()) if text else ()


def _ints(text: str | None) -> tuple[int, ...] | None:
    return tuple(int(x) for x in text.split(",") if x.strip()) if text else None


@click.command("search")
@model_option
@click.option("--manifest", "manifests", required=True, multiple=True,
              help="TSV of utterances; repeatable as NAME=PATH, each searched into OUT/NAME.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Results folder (resumable).")
@click.option("--layers", help="Comma-separated 1-based layers (default: all).")
@click.option("--keep-ratios", default="0.7,0.6,0.5,0.4,0.3", show_default=True)
@click.option("--strategies", default="attentive,uniform,truncate,padtrim,coverage@4+merge", show_default=True,
              help="attentive, uniform, truncate, coverage; @N scores from every N-th query, +merge folds dropped frames "
                   "in, +drop drops trailing padding (the ratio applies to the speech); padtrim / padtrim0: the padding "
                   "trim baseline with / without its 10 s floor.")
@click.option("--masses", default="", help="Adaptive attention masses, e.g. 0.9,0.95 (attention strategies).")
@click.option("--min-keep", default=0.3, show_default=True, help="Adaptive: fewest frames kept (share).")
@click.option("--max-keep", default=0.8, show_default=True, help="Adaptive: most frames kept (share).")
@click.option("--max-wer-increase", default=0.5, show_default=True,
              help="WER budget (points): the sparsest point within it whose paired 95% upper bound is within twice it.")
@click.option("--confirm", "confirm_manifest", type=click.Path(path_type=Path),
              help="Re-measure the chosen point on this manifest (a set nobody tuned on); it holds or not.")
@click.option("--scoring", type=click.Choice(SCORINGS), default="mean", show_default=True)
@click.option("--query-stride", default=1, show_default=True)
@click.option("--backend", type=click.Choice(["pytorch"]), default="pytorch", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--limit", type=int, help="Only the first N utterances.")
@click.option("--latency-windows", default=6, show_default=True, help="Windows timed per point (batch 1).")
@click.option("--latency-repeats", default=2, show_default=True)
@click.option("--no-guard", is_flag=True, help="Do not re-run degenerate sparse windows dense.")
@click.option("--no-latency", is_flag=True, help="WER only: skip the timing phase (no speedups, no Pareto by speed).")
@friendly_errors
def command(model, manifests, out_dir, layers, keep_ratios, strategies, masses, min_keep, max_keep, max_wer_increase,
            confirm_manifest, scoring, query_stride, backend, device, limit, latency_windows, latency_repeats, no_guard, no_latency) -> None:
    """Evaluate dense and every point on MANIFEST; write results.json, results.csv and pareto.png to OUT."""
    from whisper_eas.search.run import SearchSpec

    named = _named_manifests(manifests)
    for name, manifest in named.items():
        spec = SearchSpec(
            model=model, manifest=str(Path(manifest).resolve()), layers=_ints(layers), keep_ratios=_floats(keep_ratios),
            strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()), masses=_floats(masses),
            min_keep=min_keep, max_keep=max_keep,
            max_wer_increase=max_wer_increase, limit=limit, device=device, query_stride=query_stride, scoring=scoring,
            latency_windows=latency_windows, latency_repeats=latency_repeats, guard=not no_guard, latency=not no_latency,
            confirm_manifest=str(Path(confirm_manifest).resolve()) if confirm_manifest else None,
        )
        if len(named) > 1 or name:
            click.echo(f"## {name}: {manifest}")
        _search(spec, out_dir / name if name else out_dir, max_wer_increase)


def _named_manifests(values: tuple[str, ...]) -> dict[str, str]:
    """`PATH` (one search into OUT) or `NAME=PATH` pairs (one search each, into OUT/NAME)."""
    named = dict(v.split("=", 1) if "=" in v else ("", v) for v in values)
    if len(named) != len(values) or (len(values) > 1 and "" in named):
        raise click.BadParameter("several manifests need distinct names: --manifest short=A.tsv --manifest full=B.tsv",
                                 param_hint="--manifest")
    return named


def _search(spec, out_dir: Path, max_wer_increase: float) -> None:
    from whisper_eas.search.run import run_search

    results = run_search(spec, out_dir, progress=lambda line: click.echo(line, err=True))
    chosen = results["chosen"]
    click.echo(f"dense WER {results['dense']['wer']:.2f}% on {results['n_utterances']} utterances")
    if chosen:
        speed = f", end-to-end {chosen['e2e_speedup']:.2f}x" if chosen.get("e2e_speedup") is not None else ""
        click.echo(f"chosen: {chosen['key']}: WER {chosen['wer']:.2f}% ({chosen['wer_delta']:+.2f}, 95% "
                   f"[{chosen['ci_low']:+.2f}, {chosen['ci_high']:+.2f}]), sparsity {100 * chosen['sparsity']:.0f}%{speed}")
        confirmation = results.get("confirmation")
        if confirmation:
            c = confirmation["all"]
            click.echo(f"confirmation ({confirmation['manifest']}): {c['wer_a']:.2f}% -> {c['wer_b']:.2f}% "
                       f"({c['delta']:+.2f}, 95% [{c['low']:+.2f}, {c['high']:+.2f}]): "
                       + ("holds" if confirmation["holds"] else "DOES NOT HOLD: do not ship it"))
    else:
        click.echo(f"no point within +{max_wer_increase} WER points with its 95% upper bound within "
                   f"+{2 * max_wer_increase}")
    click.echo(f"wrote {out_dir}/results.json, results.csv, pareto.png")
