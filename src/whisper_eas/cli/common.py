"""Options and error handling shared by the command-line tools."""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable

import click

from whisper_eas.checkpoints.registry import DEFAULT_MODEL
from whisper_eas.config import SCORINGS, STRATEGIES, PruneConfig
from whisper_eas.defaults import shipped_config

# Errors whose message already says what is wrong with which file: print it, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError, RuntimeError)


def model_option(f: Callable) -> Callable:
    return click.option(
        "--model",
        "model",
        default=DEFAULT_MODEL,
        show_default=True,
        help="Embedded model name (tiny.en, base), a Hugging Face checkpoint folder or a CTranslate2 folder.",
    )(f)


def prune_options(f: Callable) -> Callable:
    """--dense | --layer L (--keep-ratio K | --mass M) [--strategy S] [--scoring S] [--query-stride N] [--merge]."""
    options = [
        click.option("--dense", is_flag=True, help="Run the dense model (no sparsification)."),
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


def resolve_prune(model: str, dense: bool, layer, keep_ratio, mass, strategy, scoring, query_stride, merge) -> PruneConfig | None:
    """The config the flags name; with none named, the model's shipped default (or dense)."""
    named = [x for x in (layer, keep_ratio, mass, strategy, scoring, query_stride, merge) if x is not None]
    if dense:
        if named:
            raise click.UsageError("--dense cannot be combined with --layer/--keep-ratio/--mass/--strategy")
        return None
    extra = dict(strategy=strategy, scoring=scoring, query_stride=query_stride, merge=merge)
    extra = {k: v for k, v in extra.items() if v is not None}
    try:
        if layer is None:
            if keep_ratio is not None or mass is not None:
                raise click.UsageError("--keep-ratio/--mass need --layer")
            base = shipped_config(model)
            return base.with_(**extra) if base is not None else None
        if keep_ratio is None and mass is None:
            raise click.UsageError("--layer needs --keep-ratio K (fixed) or --mass M (adaptive)")
        return PruneConfig(layer=layer, keep_ratio=keep_ratio, mass=mass, **extra)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def friendly_errors(f: Callable) -> Callable:
    """Turn expected failures into one-line messages (set WHISPER_EAS_DEBUG=1 for tracebacks)."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except click.ClickException:
            raise
        except USER_ERRORS as error:
            if os.environ.get("WHISPER_EAS_DEBUG"):
                raise
            raise click.ClickException(str(error)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def quiet_libraries() -> None:
    """Keep library progress bars and advisory warnings out of the CLI's output."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
