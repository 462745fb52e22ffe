"""`trt-transcribe`: audio files in, text or JSON out."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from whisper_eas.cli.common import friendly_errors, model_option, prune_options, quiet_libraries, resolve_prune

FORMATS = ("txt", "json")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_option
@prune_options
@click.option("--backend", default="pytorch", show_default=True, type=click.Choice(["pytorch"]))
@click.option("--device", default="cpu", show_default=True)
@click.option("--language", help="Language code (multilingual models; default: detect).")
@click.option("--beam-size", type=int, help="Beam search width (default: greedy).")
@click.option("--format", "fmt", default="txt", show_default=True, type=click.Choice(FORMATS))
@click.option("--output-dir", type=click.Path(path_type=Path), help="Write one output per input here.")
@friendly_errors
def command(files, model, dense, layer, keep_ratio, mass, strategy, scoring, query_stride, merge,
            backend, device, language, beam_size, fmt, output_dir) -> None:
    """Transcribe audio FILES with a sparsified Whisper model (default: embedded tiny.en, shipped config)."""
    from whisper_eas.audio import AudioError
    from whisper_eas.decoding import DecodingOptions
    from whisper_eas.outputs import write_outputs
    from whisper_eas.transcribe import Transcriber

    prune = resolve_prune(model, dense, layer, keep_ratio, mass, strategy, scoring, query_stride, merge)
    transcriber = Transcriber.from_model(model, prune, backend, device, options=DecodingOptions(language=language, beam_size=beam_size))
    failed = 0
    for path in files:
        try:
            result = transcriber.transcribe(path)
        except AudioError as error:
            failed += 1
            click.echo(f"error: {error}", err=True)
            continue
        if output_dir is None:
            click.echo(result.text if fmt == "txt" else write_outputs(result, None, (fmt,))["json"])
        else:
            for written in write_outputs(result, output_dir, (fmt,)).values():
                click.echo(f"wrote {written}", err=True)
    if failed:
        click.echo(f"{failed} of {len(files)} file(s) failed", err=True)
        sys.exit(1)


def main() -> None:
    quiet_libraries()
    command()
