"""Options and error handling shared by the command-line tools."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable

import click
from click.core import ParameterSource

from whisper_eas.checkpoints.registry import DEFAULT_MODEL
from whisper_eas.config import DEFAULT_PRUNE, GRAMMAR, SCORINGS, STRATEGIES, PruneConfig, parse_prune
from whisper_eas.defaults import shipped_config
from whisper_eas.errors import DEBUG_ENV, WhisperEasError

# Errors whose message already says what is wrong with which file: printed as they are.
USER_ERRORS: tuple[type[BaseException], ...] = (WhisperEasError, FileNotFoundError, PermissionError,
                                                IsADirectoryError, NotADirectoryError, FileExistsError)


def model_option(f: Callable) -> Callable:
    return click.option(
        "--model",
        "model",
        default=DEFAULT_MODEL,
        show_default=True,
        help="Embedded model name (tiny.en, base), a Hugging Face checkpoint folder or a CTranslate2 folder.",
    )(f)


def _remember_prune_text(ctx: click.Context, _param, value: str | None) -> None:
    ctx.meta["whisper_eas.prune"] = value


def prune_options(f: Callable) -> Callable:
    """--prune TEXT | --dense | --layer L (--keep-ratio K | --mass M) [--strategy S] [--scoring S]
    [--query-stride N] [--merge]. `--prune` takes the one text form (`PruneConfig.format`)."""
    options = [
        click.option("--prune", "prune_text", expose_value=False, callback=_remember_prune_text,
                     help=f"The whole config as text: {GRAMMAR} (e.g. 'coverage@4+merge L1 k0.4')."),
        click.option("--dense", is_flag=True, help="Run the dense model (no sparsification). With no prune flag: the model's default for this mode and device (whisper-eas defaults)."),
        click.option("--layer", type=int, help="Encoder block (1-based) whose output is pruned."),
        click.option("--keep-ratio", type=float, help="Share of encoder frames kept (fixed)."),
        click.option("--mass", type=float, help="Adaptive: keep the fewest frames holding this share of attention."),
        click.option("--strategy", type=click.Choice(STRATEGIES), help="How frames are chosen."),
        click.option("--scoring", type=click.Choice(SCORINGS), help="How attention becomes frame scores."),
        click.option("--query-stride", type=int, help="Score from every n-th query row."),
        click.option("--merge/--no-merge", default=None, help="Fold dropped frames into their nearest kept frame."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def named(parameter: str) -> bool:
    """Whether the running command's `parameter` was given on the command line (not its default)."""
    ctx = click.get_current_context(silent=True)
    source = ctx.get_parameter_source(parameter) if ctx is not None else None
    return source is not None and source not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def resolve_model(model: str, engine_dir=None) -> str | None:
    """The model to run: None (the folder's) when a folder is given and --model is not."""
    return None if engine_dir is not None and not named("model") else model


def resolve_prune(model: str | None, dense: bool, layer, keep_ratio, mass, strategy, scoring, query_stride, merge,
                  engine_dir=None, device: str = "cpu", batched: bool = False,
                  serve: bool = False) -> PruneConfig | None | Any:
    """The config the flags name; with none named, the model's shipped default on `device` in that
    mode (`batched`: batched long-form) (or dense), or, beside a folder (`engine_dir`),
    `DEFAULT_PRUNE`: the folder's own config."""
    ctx = click.get_current_context(silent=True)
    text = ctx.meta.get("whisper_eas.prune") if ctx is not None else None
    named_flags = [x for x in (layer, keep_ratio, mass, strategy, scoring, query_stride, merge) if x is not None]
    if text is not None:
        if named_flags or dense:
            raise click.UsageError("--prune cannot be combined with --dense/--layer/--keep-ratio/--mass/--strategy")
        try:
            return parse_prune(text)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--prune") from None
    if dense:
        if named_flags:
            raise click.UsageError("--dense cannot be combined with --layer/--keep-ratio/--mass/--strategy")
        return None
    if engine_dir is not None and not named_flags:
        return DEFAULT_PRUNE
    extra = dict(strategy=strategy, scoring=scoring, query_stride=query_stride, merge=merge)
    extra = {k: v for k, v in extra.items() if v is not None}
    try:
        if layer is None:
            if keep_ratio is not None or mass is not None:
                raise click.UsageError("--keep-ratio/--mass need --layer")
            base = shipped_config(model or DEFAULT_MODEL, device, batched, serve)
            if base is None and extra:
                raise click.UsageError(f"{model or DEFAULT_MODEL} ships dense (no shipped config to change): "
                                       "give --layer and --keep-ratio, or --prune")
            return base.with_(**extra) if base is not None else None
        if keep_ratio is None and mass is None:
            raise click.UsageError("--layer needs --keep-ratio K (fixed) or --mass M (adaptive)")
        return PruneConfig(layer=layer, keep_ratio=keep_ratio, mass=mass, **extra)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def describe_prune(prune: PruneConfig | None) -> str:
    """How the CLI prints a config: `dense` or `sparse <PruneConfig.format()>`."""
    return "dense" if prune is None else f"sparse {prune.format()}"


def friendly_errors(f: Callable) -> Callable:
    """User errors (`WhisperEasError`, a file that cannot be read or written) as one line; anything
    else, a bug or a library failure, as one line with the hint to set WHISPER_EAS_DEBUG=1, which
    shows the traceback instead."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except click.ClickException:
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as error:
            if os.environ.get(DEBUG_ENV):
                raise
            raise click.ClickException(error_line(error)) from None

    return wrapper


def error_line(error: BaseException) -> str:
    """The one line the CLI prints for `error`."""
    message = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, USER_ERRORS):
        return message
    return f"{message} (unexpected {type(error).__name__}; set {DEBUG_ENV}=1 to see the traceback)"


def quiet_libraries() -> None:
    """Keep library progress bars and advisory warnings out of the CLI's output. Through the
    environment, which transformers reads when it is imported: an inference on a cached ONNX export
    never imports it (nor PyTorch), and a first-run export does so later."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' own bars follow this one
    if "transformers" in sys.modules:  # imported already: the environment came too late
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def batched_options(batched: bool, vad_threshold: float | None):
    """`--batched [--vad-threshold T]` as `BatchedOptions` (None: the sequential mode)."""
    if not batched:
        return None
    from whisper_eas.batched_longform import BatchedOptions
    from whisper_eas.vad import VadOptions

    return BatchedOptions(vad=VadOptions(threshold=vad_threshold if vad_threshold is not None else 0.5))
