"""`whisper-eas defaults`: the table every command reads its default config and precision from."""

from __future__ import annotations

import json
import textwrap

import click


@click.command("defaults")
@click.option("--model", help="Only this model's rows.")
@click.option("--json", "as_json", is_flag=True, help="The rows as JSON.")
def command(model: str | None, as_json: bool) -> None:
    """Print the default prune config and precision per model, device and mode, with why each was
    chosen and its speech-val figure. trt-transcribe (sequential), trt-transcribe --batched, serve,
    eval, export and transcribe-dataset take these when no prune or precision flag is given; a
    checkpoint folder not named here runs dense float32 graphs."""
    from whisper_eas.defaults import table

    rows = [row for row in table() if model is None or row.model == model]
    if not rows:
        raise click.ClickException(f"no defaults for model {model!r} (a folder runs dense, float32)")
    if as_json:
        click.echo(json.dumps([{"model": r.model, "device": r.device, "mode": r.mode,
                                "config": r.config.format() if r.config else "dense", "precision": r.precision,
                                "why": r.why, "speech_val": r.speech_val} for r in rows], indent=2))
        return
    header = ("model", "device", "mode", "config", "precision")
    cells = [(r.model, r.device, r.mode, r.config.format() if r.config else "dense", r.precision) for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for row, line in zip(rows, cells):
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
        for label, text in (("why", row.why), ("speech-val", row.speech_val)):
            click.echo(textwrap.fill(f"{label}: {text}", width=100, initial_indent="    ", subsequent_indent="      "))
