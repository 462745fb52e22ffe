"""One decoding thread that batches the windows of every request in flight.

Requests are opened (upload decoded, checked, scanned) off this thread, then queue here. Each
round the thread admits queued requests up to `max_batch` open ones, takes the next 30 s window
of every open request and decodes them together with `scheduler.advance_round` (one batch per
distinct settings, through the product's one pipeline, `decode_windows`). A request that arrives
while a round runs joins at the next window boundary; a long upload takes one window per round,
so it never holds short requests behind its whole length. Each window's outcome depends only on
that window (window_decode.py), so a transcript does not depend on what it was batched with.

The event loop never waits on this thread: results and streamed segments are handed back with
`loop.call_soon_threadsafe`. A cancelled request (client gone, timeout) leaves at the next round.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable, Hashable

from whisper_eas.longform import LongformFile
from whisper_eas.results import Segment, TranscriptionResult
from whisper_eas.scheduler import DecodeFn, advance_round
from whisper_eas.transcribe import Transcriber
from whisper_eas.window_decode import decode_windows

log = logging.getLogger("whisper_eas.serve")

MAX_DECODERS = 256  # distinct decoding settings remembered (language x task x temperature x words ...)
SegmentsFn = Callable[[list[Segment]], None]  # called on the event loop with a request's new segments


class QueueFull(Exception):
    """More requests wait than `max_queue`; `retry_after` is a guess in seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server's queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


class EngineStopped(Exception):
    """The server is shutting down and takes no new work."""


@dataclass(eq=False)
class Job:
    """One request's decoding: its file state, its settings' decoder, and where its result goes."""

    transcriber: Transcriber
    state: LongformFile
    future: asyncio.Future
    on_segments: SegmentsFn | None = None  # streaming: new segments after each window
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    emitted: int = 0  # segments already handed to on_segments

    def cancel(self) -> None:
        """Drop this request's work at the next round (called from the event loop)."""
        self.cancelled = True


class BatchEngine:
    """Decodes the windows of all requests in flight, batched, on one thread."""

    def __init__(self, max_batch: int = 16, max_queue: int = 64,
                 on_batch: Callable[[int], None] | None = None):
        if max_batch < 1 or max_queue < 0:
            raise ValueError(f"max_batch must be >= 1 and max_queue >= 0, got {max_batch}, {max_queue}")
        self.max_batch, self.max_queue = max_batch, max_queue
        self._pending: deque[Job] = deque()
        self._active: list[Job] = []
        self._admitted = 0  # requests accepted but not yet queued here (uploading, opening)
        self._cond = threading.Condition()
        self._stopping = False
        self._decoders: dict[Hashable, DecodeFn] = {}
        self._on_batch = on_batch
        self._mean_job_s = 1.0  # recent time a request spends here: the Retry-After estimate
        self._thread = threading.Thread(target=self._run, name="whisper-eas-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # --- the event loop's side -------------------------------------------------------------

    def admit(self) -> None:
        """Reserve a place before reading the upload: a flood is refused before its bodies are read."""
        with self._cond:
            if self._stopping:
                raise EngineStopped("the server is shutting down")
            if self._admitted + len(self._pending) >= self.max_queue + self.max_batch - len(self._active):
                waiting = self._admitted + len(self._pending) + len(self._active)
                raise QueueFull(max(1, round(self._mean_job_s * waiting / self.max_batch)))
            self._admitted += 1

    def release(self) -> None:
        """Give back a reservation that never became a job (bad form, bad audio)."""
        with self._cond:
            self._admitted = max(0, self._admitted - 1)

    def submit(self, job: Job) -> None:
        """Queue an opened request (its reservation becomes the job)."""
        with self._cond:
            self._admitted = max(0, self._admitted - 1)
            if self._stopping and not self._thread.is_alive():
                raise EngineStopped("the server is shutting down")
            self._pending.append(job)
            self._cond.notify()

    def decoder(self, transcriber: Transcriber) -> DecodeFn:
        """One decode function per distinct decoding settings, so requests that differ only in their
        prompt text (which travels in each window's request) share a batch, and the cache stays
        as small as the set of settings clients use."""
        options = replace(transcriber.options, prompt=None, prefix=None)
        longform = replace(transcriber.longform, initial_prompt=None, hotwords=None, prefix=None)
        key = (options, longform, transcriber.guard)
        with self._cond:
            if len(self._decoders) >= MAX_DECODERS:  # settings are client-chosen: keep the cache bounded
                self._decoders.clear()
            if key not in self._decoders:
                self._decoders[key] = partial(decode_windows, transcriber.runner, options=options, longform=longform,
                                              guard=transcriber.guard)
            return self._decoders[key]

    @property
    def queue_depth(self) -> int:
        return len(self._pending) + self._admitted

    @property
    def in_flight(self) -> int:
        return len(self._active)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued and in flight, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    # --- the engine thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                self._active = [job for job in self._active if not self._dropped(job)]
                while self._pending and len(self._active) < self.max_batch:
                    job = self._pending.popleft()
                    if self._dropped(job):
                        continue
                    if job.state.done:  # shorter than one mel frame: nothing to decode (as run_lockstep)
                        self._finish(job)
                    else:
                        self._active.append(job)
                if not self._active:
                    if self._stopping and not self._pending:
                        return
                    self._cond.wait(timeout=1.0)
                    continue
                active = list(self._active)
            try:
                self._round(active)
            except Exception as error:  # a bug here must not kill the thread: fail the round's requests
                log.exception("decoding round failed")
                for job in active:
                    _resolve(job, exception=error)
                with self._cond:
                    self._active = [job for job in self._active if job not in active]

    def _dropped(self, job: Job) -> bool:
        if job.cancelled:
            _resolve(job, exception=asyncio.CancelledError())
            return True
        return False

    def _round(self, active: list[Job]) -> None:
        slots = [(job, job.state, self.decoder(job.transcriber)) for job in active]
        if self._on_batch is not None:
            self._on_batch(len(slots))
        errors = advance_round(slots)
        finished = []
        for job in active:
            error = errors.get(id(job))
            if error is not None:
                _resolve(job, exception=error)
                finished.append(job)
                continue
            if job.on_segments is not None and len(job.state.segments) > job.emitted:
                new, job.emitted = job.state.segments[job.emitted:], len(job.state.segments)
                _on_loop(job, job.on_segments, list(new))
            if job.state.done:
                self._finish(job)
                finished.append(job)
        if finished:
            with self._cond:
                self._active = [job for job in self._active if job not in finished]

    def _finish(self, job: Job) -> None:
        wall = time.perf_counter() - job.submitted
        self._mean_job_s = 0.8 * self._mean_job_s + 0.2 * wall
        try:
            result = job.transcriber.result(job.state, wall)
        except Exception as failure:
            _resolve(job, exception=failure)
        else:
            _resolve(job, result=result)



def _resolve(job: Job, result: TranscriptionResult | None = None, exception: BaseException | None = None) -> None:
    def settle() -> None:
        if job.future.done():
            return
        if isinstance(exception, asyncio.CancelledError):
            job.future.cancel()
        elif exception is not None:
            job.future.set_exception(exception)
        else:
            job.future.set_result(result)

    _on_loop(job, settle)


def _on_loop(job: Job, fn: Callable, *args: object) -> None:
    """Run `fn(*args)` on the event loop that waits for `job`."""
    try:
        job.future.get_loop().call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass
