"""`whisper-eas validate`: every graph of an export folder against PyTorch, through Polygraphy."""

from __future__ import annotations

import os
from pathlib import Path

import click

from whisper_eas.cli.common import friendly_errors

DEFAULT_MANIFESTS = ("tests/data/manifest.tsv",)  # the repository's real test audio, from its root


def _default_manifest() -> Path:
    candidates = [os.environ.get("WHISPER_EAS_VALIDATION_MANIFEST", ""), *DEFAULT_MANIFESTS]
    for candidate in filter(None, candidates):
        if Path(candidate).is_file():
            return Path(candidate)
    raise click.UsageError("give --manifest TSV (real audio to validate with; id path duration_s text)")


@click.command("validate")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path),
              help="TSV of real audio (default: $WHISPER_EAS_VALIDATION_MANIFEST or tests/data/manifest.tsv).")
@click.option("--limit", default=4, show_default=True, help="Utterances to feed.")
@click.option("--batch-size", default=2, show_default=True, help="Windows per iteration.")
@click.option("--graph", "graphs", multiple=True, help="Only this graph (repeatable), e.g. encoder_tail.")
@click.option("--trt", is_flag=True, help="Add TensorRT (FP16 tolerances); needs tensorrt and a GPU.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Write the table as JSON.")
@friendly_errors
def command(directory, manifest, limit, batch_size, graphs, trt, json_out) -> None:
    """Compare each graph's outputs with PyTorch's; exit non-zero on a mismatch."""
    from dataclasses import asdict

    from whisper_eas.validation.parity import ParityError, validate_export
    from whisper_eas.io_utils import atomic_write_json

    manifest = manifest or _default_manifest()
    try:
        report = validate_export(directory, manifest, limit=limit, batch=batch_size, trt=trt, graphs=graphs or None)
    except ParityError as error:
        if json_out:
            atomic_write_json(json_out, [asdict(r) for r in error.report.rows])
        raise
    if json_out:
        atomic_write_json(json_out, [asdict(r) for r in report.rows])
    click.echo(report.table())
    click.echo(f"ok: {len(report.rows)} outputs within tolerance on {report.n_utterances} utterances ({manifest})")
