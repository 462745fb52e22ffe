"""`whisper-eas convert`: CTranslate2 / faster-whisper folder -> Hugging Face checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from whisper_eas.cli.common import friendly_errors


@click.command("convert")
@click.option("--ct2", "src", required=True, type=click.Path(path_type=Path), help="CTranslate2 model folder.")
@click.option("--out", "dst", required=True, type=click.Path(path_type=Path), help="Output checkpoint folder.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("--check", "check_manifest", type=click.Path(dir_okay=False, path_type=Path),
              help="Then prove it on this manifest's English audio: greedy tokens equal to CTranslate2's "
                   "(needs ctranslate2); exits 1 if any differ.")
@click.option("--limit", type=click.IntRange(min=1), help="--check: only the first N utterances.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="--check: write the report.")
@friendly_errors
def command(src: Path, dst: Path, overwrite: bool, check_manifest: Path | None, limit: int | None,
            json_out: Path | None) -> None:
    """Convert a CTranslate2 Whisper model (model.bin, config.json, tokenizer.json) to a HF checkpoint."""
    from whisper_eas.checkpoints.convert import convert_ct2_to_hf

    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise click.ClickException(f"{dst}: exists and is not empty (use --overwrite to replace it)")
    out = convert_ct2_to_hf(src, dst)
    click.echo(f"wrote {out}")
    if check_manifest is not None:
        _check(src, out, check_manifest, limit, json_out)


def _check(src: Path, out: Path, manifest: Path, limit: int | None, json_out: Path | None) -> None:
    from whisper_eas.evaluation.manifest import read_manifest
    from whisper_eas.io_utils import atomic_write_json
    from whisper_eas.validation.conversion import check_conversion

    utterances = read_manifest(manifest, limit)
    result = check_conversion(out, src, utterances,
                              progress=lambda done, total: click.echo(f"checked {done}/{total}", err=True))
    if json_out:
        atomic_write_json(json_out, result.to_dict())
    click.echo(result.summary())
    if not result.ok:
        raise click.ClickException(f"{out}: greedy tokens differ from CTranslate2 on "
                                   f"{len(result.rows) - result.tokens_equal} utterance(s) of {manifest}")
