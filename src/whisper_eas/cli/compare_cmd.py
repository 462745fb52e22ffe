"""`whisper-eas compare A.json B.json`: B's WER against A's on the same utterances, with a paired
bootstrap 95% interval, overall and per source (id prefix)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from whisper_eas.cli.common import friendly_errors
from whisper_eas.errors import InputError


def read_transcripts(spec: str) -> tuple[dict[str, str], dict[str, str], str]:
    """(refs, hyps, label) from an eval report (`whisper-eas eval --json`), or from one config of a
    grid file (`scripts/accuracy_grid.py`) named as `FILE#CONFIG`."""
    path, _, key = spec.partition("#")
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not JSON ({error.msg}, line {error.lineno})") from None
    if "utterances" in data:
        rows = [u for u in data["utterances"] if u.get("error") is None and u.get("hyp") is not None]
        return {u["id"]: u["ref"] for u in rows}, {u["id"]: u["hyp"] for u in rows}, path
    if "points" in data and "refs" in data:
        if key not in data["points"]:
            names = ", ".join(sorted(data["points"]))
            raise InputError(f"{path}: name a config as {path}#NAME, one of: {names}")
        return data["refs"], data["points"][key]["hyps"], key
    raise InputError(f"{path}: neither an eval report (utterances) nor a grid file (points, refs)")


def _line(name: str, d: dict) -> str:
    return (f"{name:<10} {d['n_utterances']:>5} {d['n_words']:>6} {d['wer_a']:>7.2f} {d['wer_b']:>7.2f} "
            f"{d['delta']:>+7.2f}  [{d['low']:+.2f}, {d['high']:+.2f}]  {d['better']:>4} {d['worse']:>4} {d['same']:>4}")


@click.command("compare")
@click.argument("baseline")
@click.argument("other")
@click.option("--resamples", default=2000, show_default=True, type=click.IntRange(min=100),
              help="Bootstrap resamples of the utterances.")
@click.option("--seed", default=0, show_default=True, help="Bootstrap seed.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write the comparison here.")
@friendly_errors
def command(baseline, other, resamples, seed, json_out) -> None:
    """OTHER's WER minus BASELINE's (e.g. dense) over the utterances both transcribed, with a paired
    bootstrap 95% interval and the counts of utterances that got better / worse; per source too.
    Each argument: an `eval --json` report, or GRID.json#CONFIG."""
    from whisper_eas.io_utils import atomic_write_json

    refs_a, hyps_a, label_a = read_transcripts(baseline)
    refs_b, hyps_b, label_b = read_transcripts(other)
    refs = {uid: ref for uid, ref in refs_a.items() if uid in refs_b}
    result = print_comparison(refs, hyps_a, hyps_b, label_a, label_b, resamples, seed)
    if json_out:
        atomic_write_json(json_out, {"baseline": label_a, "other": label_b, **result})


def print_comparison(refs: dict[str, str], hyps_a: dict[str, str], hyps_b: dict[str, str], label_a: str,
                     label_b: str, resamples: int = 2000, seed: int = 0) -> dict:
    """Print B against A (overall and per source) and return `stats.compare`'s result."""
    from whisper_eas.evaluation.stats import compare

    if not any(uid in hyps_a and uid in hyps_b for uid in refs):
        raise InputError(f"{label_a} and {label_b} share no utterance ids")
    result = compare(refs, hyps_a, hyps_b, resamples, seed)
    click.echo(f"{label_b} against {label_a} (delta = WER points, paired bootstrap 95%, {resamples} resamples)")
    click.echo(f"{'source':<10} {'utts':>5} {'words':>6} {'WER A':>7} {'WER B':>7} {'delta':>7}  interval"
               f"            {'bett':>4} {'wors':>4} {'same':>4}")
    click.echo(_line("all", result["all"]))
    for name, d in result["sources"].items():
        click.echo(_line(name, d))
    return result
