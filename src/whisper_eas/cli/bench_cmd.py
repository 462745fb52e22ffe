"""`whisper-eas bench`: CPU speed of ONNX Runtime, PyTorch and faster-whisper, dense vs sparse.

Two benchmarks: short clips, one padded 30 s window each (the default, `benchmark.cpu`), and
`bench --longform`: whole long recordings end to end, sequential and batched, against
faster-whisper (`benchmark.longform`, its own options: `whisper-eas bench --longform --help`; lists
comma-separated, e.g. `--precisions fp32,int8`). Both time through `benchmark.timing`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from whisper_eas.cli.common import friendly_errors, model_option, prune_options, resolve_prune
from whisper_eas.exporter.quantize import PRECISIONS


def _choices(*allowed: str):
    """A comma-separated subset of `allowed`, as a list."""

    def convert(ctx, param, value: str) -> list[str]:
        items = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [v for v in items if v not in allowed]
        if unknown or not items:
            raise click.BadParameter(f"choose from {', '.join(allowed)} (comma-separated), got {value!r}")
        return items

    return convert


def _sparse_configs(ctx, param, values: tuple[str, ...]) -> list:
    """Each `--prune` text as a PruneConfig (the one grammar; `dense` is `--configs dense`)."""
    from whisper_eas.config import PruneConfig

    try:
        return [PruneConfig.parse(text) for text in values]
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command("longform")
@model_option
@click.option("--manifest", "manifest", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="A long-form TSV (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), help="First N recordings of each manifest.")
@click.option("--repeats", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=0),
              help="Threads for every system (0: each library's own).")
@click.option("--precisions", default="fp32,int8", show_default=True, callback=_choices(*PRECISIONS))
@click.option("--configs", default="dense,shipped", show_default=True, callback=_choices("dense", "shipped"))
@click.option("--fw-types", default="int8,float32", show_default=True, callback=_choices("int8", "float32"))
@click.option("--fw-modes", default="sequential,batched", show_default=True,
              callback=_choices("sequential", "batched"))
@click.option("--prune", "prune", multiple=True, callback=_sparse_configs,
              help="Also our rows for this sparse config, e.g. 'coverage@4+merge L1 k0.5' (repeatable; "
                   "exported once into the model cache).")
@click.option("--turns", default="round", show_default=True, type=click.Choice(["round", "file"]),
              help="Systems take turns per round (each over every file) or per file (finer, for a busy machine).")
@click.option("--systems", help="Only these builders of benchmark.longform.SYSTEMS, comma-separated (default: all).")
@click.option("--pytorch", is_flag=True, help="Add our PyTorch backend (slow).")
@click.option("--no-faster-whisper", is_flag=True)
@click.option("--fw-batch", default=8, show_default=True, type=click.IntRange(min=1),
              help="BatchedInferencePipeline batch size.")
@click.option("--ct2-dir", type=click.Path(file_okay=False), help="faster-whisper CT2 folder (default: the embedded model's).")
@click.option("--profile", is_flag=True, help="Per-stage profile of our sequential ONNX Runtime systems.")
@click.option("--profile-files", default=2, show_default=True, type=click.IntRange(min=1),
              help="Recordings the profile pass covers.")
@click.option("--json", "json", required=True, type=click.Path(dir_okay=False))
@click.option("--markdown", required=True, type=click.Path(dir_okay=False))
@friendly_errors
def longform_command(**options) -> None:
    """Long recordings end to end, our systems beside faster-whisper's."""
    from argparse import Namespace

    from whisper_eas.benchmark.longform import run

    options["manifest"] = list(options["manifest"])
    options["systems"] = options["systems"].split(",") if options["systems"] else None
    run(Namespace(**options))


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
    """Benchmark end-to-end transcription side by side (default: dense and the model's default config,
    `whisper-eas defaults`)."""
    from whisper_eas.benchmark.cpu import BenchSpec, run

    prune = resolve_prune(model, dense, layer, keep_ratio, mass, strategy, scoring, query_stride, merge)
    if prune is None:
        raise click.UsageError("bench compares dense with a sparse config: leave out --dense")
    spec = BenchSpec(manifest=str(manifest), json=json_out, markdown=markdown, model=model, config=prune, limit=limit,
                     batch_size=batch_size, repeats=repeats, threads=threads, export_dir=export_dir, ct2_dir=ct2_dir,
                     no_faster_whisper=no_faster_whisper)
    click.echo(run(spec))
