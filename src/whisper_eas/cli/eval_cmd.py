"""`whisper-eas eval`: WER of a model (dense or sparsified) on a manifest."""

from __future__ import annotations

from pathlib import Path

import sys

import click

from whisper_eas.cli.common import friendly_errors, model_option, prune_options, resolve_prune


@click.command("eval")
@model_option
@click.option("--manifest", required=True, type=click.Path(path_type=Path), help="TSV: id path duration_s text.")
@click.option("--limit", type=int, help="Only the first N utterances.")
@prune_options
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--backend", default="pytorch", show_default=True, help="Runner backend.")
@click.option("--beam-size", type=int, help="Beam search width (default: greedy).")
@click.option("--batch-size", default=8, show_default=True, help="Windows decoded together.")
@click.option("--no-guard", is_flag=True, help="Do not re-run degenerate sparse windows dense.")
@click.option("--language", help="Language code for multilingual models (default: detect).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write the full report here.")
@friendly_errors
def command(model, manifest, limit, dense, layer, keep_ratio, mass, strategy, scoring, query_stride, merge,
            device, backend, beam_size, batch_size, no_guard, language, json_out) -> None:
    """Transcribe a manifest and score WER (Whisper English normalizer + jiwer)."""
    from whisper_eas.decoding import DecodingOptions
    from whisper_eas.evaluation.evaluate import evaluate
    from whisper_eas.evaluation.manifest import read_manifest
    from whisper_eas.guard import GuardOptions
    from whisper_eas.io_utils import atomic_write_json
    from whisper_eas.runners.factory import make_runner

    prune = resolve_prune(model, dense, layer, keep_ratio, mass, strategy, scoring, query_stride, merge)
    utterances = read_manifest(manifest, limit)
    runner = make_runner(backend=backend, model=model, prune=prune, device=device)
    options = DecodingOptions(beam_size=beam_size, language=language)
    with click.progressbar(length=len(utterances), label="eval", file=sys.stderr) as bar:
        report = evaluate(runner, utterances, options, GuardOptions(enabled=not no_guard), batch_size,
                          progress=lambda done, total: bar.update(done - bar.pos))
    for failed in (u for u in report.utterances if u.error):
        click.echo(f"failed: {failed.error}", err=True)
    click.echo(report.summary())
    if json_out:
        atomic_write_json(json_out, report.to_dict())
