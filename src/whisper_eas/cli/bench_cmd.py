"""`whisper-eas bench`: CPU speed of ONNX Runtime, PyTorch and faster-whisper, dense vs sparse."""

from __future__ import annotations

import click


@click.command("bench", context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args: tuple[str, ...]) -> None:
    """Benchmark end-to-end transcription side by side (run `whisper-eas bench --help` for options)."""
    from whisper_eas.benchmark.cpu import main

    main(list(args))
