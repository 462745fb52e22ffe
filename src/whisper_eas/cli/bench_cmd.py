"""`whisper-eas bench`: CPU speed of ONNX Runtime, PyTorch and faster-whisper, dense vs sparse.

Two benchmarks: short clips, one padded 30 s window each (the default, `benchmark.cpu`), and
`bench --longform`: whole long recordings end to end, sequential and batched, against
faster-whisper (`benchmark.longform`, its own options: `whisper-eas bench --longform --help`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from whisper_eas.cli.common import friendly_errors, model_option, prune_options, resolve_prune


@click.command("longform", context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def longform_command(args: tuple[str, ...]) -> None:
    """Long recordings end to end, our systems beside faster-whisper's (`--help` for options)."""
    from whisper_eas.benchmark.longform import main

    main(list(args))


class _BenchCommand(click.Command):
    """`bench --longform ...` is the long-form benchmark, with its own options."""

    def make_context(self, info_name, args, parent=None, **extra):
        if "--longform" in args:
            rest = [a for a in args if a != "--longform"]
            return longform_command.make_context(info_name, rest, parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


@click.command("bench", cls=_BenchCommand)
@click.option("--longform", is_flag=True, help="Long recordings end to end instead (own options: --longform --help).")
@model_option
@click.option("--manifest", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="TSV: id path duration_s text (files of one 30 s window are used).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N utterances.")
@prune_options
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Windows per call.")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1), help="Timed passes (median).")
@click.option("--threads", type=click.IntRange(min=1), help="Threads for every backend (default: each library's own).")
@click.option("--export-dir", default=str(Path(tempfile.gettempdir()) / "whisper-eas-bench"), show_default=True,
              type=click.Path(file_okay=False), help="ONNX exports are kept here between runs.")
@click.option("--ct2-dir", type=click.Path(file_okay=False), help="faster-whisper CT2 folder (default: the embedded model's).")
@click.option("--no-faster-whisper", is_flag=True, help="Leave faster-whisper out.")
@click.option("--json", "json_out", required=True, type=click.Path(dir_okay=False), help="Write the results here.")
@click.option("--markdown", required=True, type=click.Path(dir_okay=False), help="Write the table here.")
@friendly_errors
def command(longform, model, manifest, limit, dense, layer, keep_ratio, mass, strategy, scoring, query_stride, merge, batch_size,
            repeats, threads, export_dir, ct2_dir, no_faster_whisper, json_out, markdown) -> None:
    """Benchmark end-to-end transcription side by side (default: the model's shipped sparse config)."""
    from whisper_eas.benchmark.cpu import BenchSpec, run

    prune = resolve_prune(model, dense, layer, keep_ratio, mass, strategy, scoring, query_stride, merge)
    if prune is None:
        raise click.UsageError("bench compares dense with a sparse config: leave out --dense")
    spec = BenchSpec(manifest=str(manifest), json=json_out, markdown=markdown, model=model, config=prune, limit=limit,
                     batch_size=batch_size, repeats=repeats, threads=threads, export_dir=export_dir, ct2_dir=ct2_dir,
                     no_faster_whisper=no_faster_whisper)
    click.echo(run(spec))
