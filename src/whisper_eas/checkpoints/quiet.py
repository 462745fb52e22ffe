"""transformers' own progress bars and advisory logs kept out of whisper-eas's output.

Loading a checkpoint prints "Loading weights" and converting one "Writing model shards" (tqdm
bars on stderr, on a terminal or not); whisper-eas shows its own progress (`cli.progress`) and
plain log lines instead. Scoped, so a program that uses transformers itself keeps its settings.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' progress bars off and its logs at error level inside the block, restored after."""
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
