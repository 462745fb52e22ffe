"""PyTorch's intra-op threads while a runner decodes: one for runtimes that compute elsewhere.

With ONNX Runtime (or a GPU) the decoding loop's torch work is host-side bookkeeping on one row
of logits per window: suppression masks, the timestamp rules' log-softmax over the 51864-token
vocabulary, argmax. Those ops are just above PyTorch's parallel grain (32768 elements), so with
two threads each one waits for a second thread: on the shared 2-core machine this project is
built on, a masked fill over the vocabulary took 1.3-28 ms with two threads and 5 us with one,
and the timestamp rules were a quarter of a tiny.en long-form run (1.4 s of 5.8 s). A runner
says how many threads its host-side work wants (`Runner.host_threads`, None: leave as is).
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import wraps
from typing import Callable, Iterator, TypeVar

import torch

F = TypeVar("F", bound=Callable)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with `threads` PyTorch intra-op threads, then restore (switching costs ~10 us)."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def with_host_threads(function: F) -> F:
    """Decorate a function whose first argument is a runner: it runs under `runner.host_threads`."""

    @wraps(function)
    def wrapper(runner, *args, **kwargs):
        with torch_threads(getattr(runner, "host_threads", None)):
            return function(runner, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
