"""`whisper-eas convert`: CTranslate2 / faster-whisper folder -> Hugging Face checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from whisper_eas.cli.common import friendly_errors


@click.command("convert")
@click.option("--ct2", "src", required=True, type=click.Path(path_type=Path), help="CTranslate2 model folder.")
@click.option("--out", "dst", required=True, type=click.Path(path_type=Path), help="Output checkpoint folder.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@friendly_errors
def command(src: Path, dst: Path, overwrite: bool) -> None:
    """Convert a CTranslate2 Whisper model (model.bin, config.json, tokenizer.json) to a HF checkpoint."""
    from whisper_eas.checkpoints.convert import convert_ct2_to_hf

    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise click.ClickException(f"{dst}: exists and is not empty (use --overwrite to replace it)")
    out = convert_ct2_to_hf(src, dst)
    click.echo(f"wrote {out}")
