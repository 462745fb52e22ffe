"""`whisper-eas transcribe-dataset`: trt-transcribe for archives, on a Ray cluster (or this machine's cores)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from whisper_eas.cli.common import friendly_errors, model_option, prune_options, resolve_model, resolve_prune
from whisper_eas.cli.inputs import _disambiguate, discover
from whisper_eas.cli.progress import RunStats
from whisper_eas.outputs import FORMATS, expand_formats
from whisper_eas.runners.factory import BACKEND_CHOICES


@click.command("transcribe-dataset", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_spec", metavar="INPUT")
@click.option("--output-dir", required=True, type=click.Path(path_type=Path),
              help="Outputs (named as trt-transcribe names them) and results.parquet.")
@model_option
@click.option("--engine-dir", help="ONNX export folder or TensorRT engines, at this path on every worker.")
@click.option("--backend", default="auto", show_default=True, type=click.Choice(BACKEND_CHOICES),
              help="Chosen on each actor, as trt-transcribe chooses it.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda (on the workers).")
@prune_options
@click.option("--language", help="Language code (multilingual models; default: detect per file).")
@click.option("--task", default="transcribe", show_default=True, type=click.Choice(["transcribe", "translate"]))
@click.option("--beam-size", type=click.IntRange(min=1), help="Beam search width (default: greedy).")
@click.option("--format", "fmt", default="txt", show_default=True, type=click.Choice(FORMATS + ("all",)))
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Windows decoded together in an actor, across its files.")
@click.option("--overwrite", is_flag=True, help="Redo files whose outputs already exist (default: skip them).")
@click.option("--allow-partial", is_flag=True,
              help="Transcribe what a truncated or corrupt file yields (with a warning) instead of failing it.")
@click.option("--address", help="Ray cluster to join (auto, ray://HOST:10001); default: Ray on this machine.")
@click.option("--actors", default=1, show_default=True, type=click.IntRange(min=1),
              help="Transcription actors, each loading the model once (one per GPU on a GPU cluster).")
@click.option("--gpus-per-actor", type=click.FloatRange(min=0), help="Default: 1 with --device cuda, else 0.")
@click.option("--cpus-per-actor", default=1.0, show_default=True, type=click.FloatRange(min=0.01))
@click.option("--files-per-call", default=8, show_default=True, type=click.IntRange(min=1),
              help="Files handed to an actor at a time.")
@click.option("--max-decoded-minutes", default=30.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Longer files are read (streamed) by the actor itself instead of decoded on a CPU task; "
                   "with --allow-partial every file is.")
@click.option("--num-cpus", type=click.IntRange(min=1),
              help="CPUs of the local Ray (default: all); not with --address.")
@friendly_errors
def command(input_spec, output_dir, model, engine_dir, backend, device, dense, layer, keep_ratio, mass, strategy,
            scoring, query_stride, merge, language, task, beam_size, fmt, batch_size, overwrite, allow_partial,
            address, actors, gpus_per_actor, cpus_per_actor, files_per_call, max_decoded_minutes, num_cpus) -> None:
    """Transcribe a folder, manifest TSV or Parquet/CSV/JSONL table of paths with Ray Data."""
    from whisper_eas.scaleout import ClusterSpec, TranscribeSpec, require_ray, run_job

    require_ray()
    items = dataset_items(input_spec)
    if not items:
        raise click.UsageError(f"no audio files found in {input_spec}")
    from whisper_eas.config import PruneConfig

    model = resolve_model(model, engine_dir)
    prune = resolve_prune(model, dense, layer, keep_ratio, mass, strategy, scoring, query_stride, merge, engine_dir,
                          device)
    named = prune is None or isinstance(prune, PruneConfig)  # else the marker for the folder's own config
    spec = TranscribeSpec(model=model, prune=prune if named else None, default_prune=not named, backend=backend,
                          device=device, engine_dir=engine_dir,
                          language=language, task=task, beam_size=beam_size, batch_size=batch_size,
                          options=(("allow_partial", True),) if allow_partial else ())
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if device.startswith("cuda") or backend == "tensorrt" else 0.0
    cluster = ClusterSpec(address=address, actors=actors, cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor,
                          files_per_call=files_per_call, local_cpus=num_cpus,
                          max_decoded_s=0.0 if allow_partial else max_decoded_minutes * 60)
    where, which = address or "a local Ray", model or "the folder's"
    click.echo(f"{len(items)} file(s); {actors} actor(s) on {where}; model {which}, "
               f"{spec.config_text()}", err=True)
    report = run_job(items, output_dir, expand_formats(fmt), spec, cluster, overwrite=overwrite, on_row=_print_row)
    stats = RunStats(ok=report.ok, failed=report.failed, skipped=report.skipped, audio_s=report.audio_s)
    stats.started -= report.wall_s
    click.echo(f"{stats.summary()} (Ray start {report.connect_s:.1f} s)\nresults: {report.results}", err=True)
    if report.failed:
        sys.exit(1)


def _print_row(record: dict) -> None:
    if record["status"] == "ok":
        click.echo(f"done {record['source']} ({record['duration_s']:.1f} s audio, {record['backend']} on "
                   f"{record['device']}, {record['node']}:{record['worker_pid']})", err=True)
        if record["warnings"]:
            click.echo(f"warning: {record['source']}: {record['warnings']}", err=True)
    else:
        click.echo(f"error: {record['error']}", err=True)


def dataset_items(input_spec: str) -> list:
    """Listed inputs with trt-transcribe's output names (a local folder: exactly `trt-transcribe DIR`'s)."""
    from whisper_eas.scaleout import DatasetItem
    from whisper_eas.scaleout.sources import is_uri, list_inputs

    if not is_uri(input_spec) and Path(input_spec).is_dir():
        return [DatasetItem(str(f.path), f.name) for f in discover([Path(input_spec)])]
    listing = list_inputs(input_spec)
    if listing.folder is not None:  # a remote folder: names keep the relative path, as for local folders
        named = _disambiguate([(Path(p), Path(listing.relative(p).with_suffix(""))) for p in listing.paths])
        return [DatasetItem(p, f.name) for p, f in zip(listing.paths, named)]
    by_key = {str(Path(p)): p for p in listing.paths}  # URIs keep their '//' only in the original text
    return [DatasetItem(by_key[str(f.path)], f.name) for f in discover([Path(p) for p in listing.paths])]
