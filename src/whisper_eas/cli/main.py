"""`whisper-eas`: convert, evaluate, search, export, validate, benchmark and serve."""

from __future__ import annotations

import click

from whisper_eas.cli.common import quiet_libraries


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="whisper-eas")
def cli() -> None:
    """Faster Whisper by early attentive sparsification of the encoder."""
    quiet_libraries()


def _register() -> None:
    from whisper_eas.cli import (bench_cmd, compare_cmd, convert_cmd, defaults_cmd, eval_cmd, export_cmd, search_cmd,
                                 validate_cmd)

    for module in (bench_cmd, compare_cmd, convert_cmd, defaults_cmd, eval_cmd, search_cmd, export_cmd, validate_cmd):
        cli.add_command(module.command)
    from whisper_eas.cli import dataset_cmd  # transcribe-dataset (Ray, imported only when it runs)

    cli.add_command(dataset_cmd.command)
    from whisper_eas.cli import serve_cmd  # FastAPI and uvicorn are imported only when it runs

    cli.add_command(serve_cmd.command)


_register()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
