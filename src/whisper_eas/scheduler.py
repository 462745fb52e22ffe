"""Advance many files' long-form decoding in lockstep so their windows share batches.

Up to `batch_size` files are open at once; each round takes the next window of every open file,
decodes them together and feeds each outcome back to its file. A finished file frees its slot for
the next input, so short files stream through while long ones continue. Files are only opened
(audio decoded, log-mel computed) when a slot is free, which keeps memory flat over thousands of
inputs. A failure is confined to its file: a bad input fails when opened, and a round that raises
is retried window by window so only the window that fails again takes its file down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable, Iterator

from whisper_eas.errors import ConfigError
from whisper_eas.longform import LongformFile, WindowOutcome, WindowRequest

Opener = Callable[[], LongformFile]
DecodeFn = Callable[[list[WindowRequest]], list[WindowOutcome]]


@dataclass
class Finished:
    """A file that left the scheduler: its final state, or the error that stopped it."""

    key: Hashable
    state: LongformFile | None
    error: Exception | None
    wall_s: float  # from opening to finishing (batched work is shared, so these overlap)


@dataclass
class _Open:
    key: Hashable
    state: LongformFile
    started: float = field(default_factory=time.perf_counter)


def run_lockstep(jobs: Iterable[tuple[Hashable, Opener]], decode: DecodeFn, batch_size: int) -> Iterator[Finished]:
    """Yield every job as `Finished`, in the order files finish."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    pending = iter(jobs)
    active: list[_Open] = []
    exhausted = False
    while True:
        while not exhausted and len(active) < batch_size:
            job = next(pending, None)
            if job is None:
                exhausted = True
                break
            opened = _open(*job)
            if isinstance(opened, Finished):
                yield opened
            else:
                active.append(opened)
        if not active:
            return
        errors = _advance(active, decode)
        still = []
        for slot in active:
            error = errors.get(id(slot))
            if error is not None or slot.state.done:
                yield Finished(slot.key, None if error else slot.state, error, time.perf_counter() - slot.started)
            else:
                still.append(slot)
        active = still


def _open(key: Hashable, opener: Opener) -> _Open | Finished:
    started = time.perf_counter()
    try:
        state = opener()
    except Exception as error:  # one bad input never stops the batch
        return Finished(key, None, error, time.perf_counter() - started)
    if state.done:  # shorter than one mel frame: nothing to decode
        return Finished(key, state, None, time.perf_counter() - started)
    return _Open(key, state, started)


def _advance(active: list[_Open], decode: DecodeFn) -> dict[int, Exception]:
    """Decode one window per open file; returns {id(slot): error} for files that failed."""
    return advance_round([(slot, slot.state, decode) for slot in active])


def advance_round(slots: list[tuple[object, LongformFile, DecodeFn]]) -> dict[int, Exception]:
    """Decode the next window of every (owner, state, decode) and feed it back to its state.

    Slots that share a `decode` (the same settings) are decoded as one batch; the service's
    requests with different settings form one batch per setting. Returns {id(owner): error}
    for the files that failed: a bad window never takes its batch neighbours down.
    """
    errors: dict[int, Exception] = {}
    groups: dict[int, list[tuple[object, WindowRequest, LongformFile]]] = {}
    decoders: dict[int, DecodeFn] = {}
    for owner, state, decode in slots:  # features are read from the file window by window: a read can fail
        try:
            request = state.next_window()
        except Exception as error:
            errors[id(owner)] = error
            continue
        groups.setdefault(id(decode), []).append((owner, request, state))
        decoders[id(decode)] = decode
    for key, members in groups.items():
        decode = decoders[key]
        requests = [request for _, request, _ in members]
        try:
            outcomes: list[WindowOutcome | Exception] = list(decode(requests))
        except Exception:  # isolate: retry each window alone
            outcomes = [_decode_one(decode, request) for request in requests]
        for (owner, _, state), outcome in zip(members, outcomes):
            if isinstance(outcome, Exception):
                errors[id(owner)] = outcome
                continue
            try:
                state.accept(outcome)
            except Exception as error:
                errors[id(owner)] = error
    return errors


def _decode_one(decode: DecodeFn, request: WindowRequest) -> WindowOutcome | Exception:
    try:
        return decode([request])[0]
    except Exception as error:
        return error
