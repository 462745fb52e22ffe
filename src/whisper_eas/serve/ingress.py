"""The Ray Serve ingress: the HTTP side of the service, in front of the model replicas.

It reads and checks each request as the single-process app does (`base_app`, `read_form`: the same
key check, limits, field errors and envelopes) but holds no model: the upload's bytes go to one
model replica through a `DeploymentHandle` (`ray_app.ModelReplica`), which opens, batches and
decodes it. A replica that dies with requests in flight (SIGKILL, out of memory, a lost node)
makes Ray raise an actor error at the caller; the ingress sends the request once more, to another
replica (Ray's router has already dropped the dead one), and if that fails too the client gets
OpenAI's envelope, 503 with Retry-After, never Ray's plain-text 500 or a hang. A stream is retried
only while nothing has been sent to its client (text already sent cannot be taken back); after that
it ends with an error event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from whisper_eas.serve.app import DISCONNECT_POLL_S, ServeConfig, audio_routes, base_app, read_form
from whisper_eas.serve.metrics import ServeMetrics
from whisper_eas.serve.protocol import ApiError, TranscriptionRequest, error_event

log = logging.getLogger("whisper_eas.serve")

RETRY_AFTER_S = 5  # a replacement replica loads the model in seconds
TIMEOUT_SLACK_S = 60.0  # beyond the replica's own request timeout: the ingress's last resort against a hang


def replica_gone(error: BaseException) -> bool:
    """Whether `error` says the replica (not the request) failed: the request may go to another."""
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

    gone = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)
    return isinstance(error, gone) or isinstance(getattr(error, "cause", None), gone)


def unavailable(what: str) -> ApiError:
    return ApiError(503, f"the model replica decoding this request {what}; retry in a few seconds",
                    type="server_error", code="replica_unavailable", headers={"Retry-After": str(RETRY_AFTER_S)})


def create_ingress(model: Any, config: ServeConfig, multilingual: bool, capacity: int) -> FastAPI:
    """The ingress app over `model` (a handle to `ModelReplica`); it admits `capacity` requests at a
    time (every replica's --max-batch + --max-queue), more get 429 before their body is read."""
    metrics = ServeMetrics()
    for part in (metrics.batch, metrics.queue, metrics.in_flight, metrics.audio):
        metrics.registry.unregister(part)  # the replicas' (appended to /metrics from one replica)
    admitted = 0

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield

    async def replica_metrics() -> bytes:
        try:
            return await model.metrics_text.remote()
        except Exception as error:
            if not replica_gone(error):
                raise
            return b""

    app, authorize = base_app(config, metrics, lifespan, more_metrics=replica_metrics)
    app.state.metrics, app.state.config = metrics, config
    app.state.draining = False  # set by `drain` when the command is stopping: new requests get 503
    app.state.in_flight = lambda: admitted

    @app.get("/health")
    async def health() -> JSONResponse:
        for attempt in range(2):
            try:
                body = await model.health.remote()
                return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)
            except Exception as error:
                if not replica_gone(error):
                    raise
        return JSONResponse({"status": "unavailable", "model": config.model_name}, status_code=503)

    async def _transcribe(request: Request, task: str) -> Response:
        nonlocal admitted
        authorize(request)
        if app.state.draining:
            raise ApiError(503, f"the server is shutting down; retry after {RETRY_AFTER_S} s", type="server_error",
                           code="shutting_down", headers={"Retry-After": str(RETRY_AFTER_S)})
        if admitted >= capacity:
            raise ApiError(429, f"the server's queue is full; retry after {RETRY_AFTER_S} s", type="rate_limit_error",
                           code="queue_full", headers={"Retry-After": str(RETRY_AFTER_S)})
        admitted += 1
        streaming = False
        try:
            spec, upload = await read_form(request, task, config, multilingual)
            try:
                filename = upload.filename or "upload"
                data = await to_thread.run_sync(_read_all, upload.file)
            finally:
                await upload.close()
            if spec.stream:
                response = await _stream(request, data, filename, spec)
                streaming = True
                return response
            reply = await _call(request, lambda: model.transcribe.remote(data, filename, spec))
            if isinstance(reply, ApiError):
                raise reply
            body, media = reply
            return Response(body, media_type=media)
        finally:
            if not streaming:
                admitted -= 1

    async def _call(request: Request, send: Callable[[], Any]) -> Any:
        """`send()`'s reply, sent again once if its replica dies; 503 if the second one dies too."""
        deadline = time.monotonic() + config.request_timeout_s + TIMEOUT_SLACK_S
        for attempt in range(2):
            response = send()
            waiting = asyncio.ensure_future(_result(response))
            try:
                while True:
                    done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_S)
                    if done:
                        return waiting.result()
                    if await request.is_disconnected():
                        raise asyncio.CancelledError()
                    if time.monotonic() > deadline:
                        raise ApiError(504, f"the transcription took longer than this server's request timeout "
                                            f"({config.request_timeout_s:g} s)", type="server_error", code="timeout")
            except Exception as error:
                if not replica_gone(error):
                    raise
                log.warning("a model replica failed with a request in flight (%s: %s)%s", type(error).__name__,
                            str(error).splitlines()[0] if str(error) else "", "; retrying it" if not attempt else "")
            finally:
                if not waiting.done():
                    waiting.cancel()
                    if hasattr(response, "cancel"):  # a DeploymentResponse (a coroutine goes with its task)
                        response.cancel()
        raise unavailable("failed twice")

    async def _stream(request: Request, data: bytes, filename: str, spec: TranscriptionRequest) -> Response:
        """The stream's events from one replica; the opening (audio checks) comes first, so a bad
        upload is a plain 400 envelope, not a stream."""

        async def opened() -> Any:
            """A replica's event generator past its first item (None: opened; else the ApiError)."""
            events = model.options(stream=True).stream.remote(data, filename, spec)
            try:
                first = await events.__anext__()
            except BaseException:
                events.cancel()
                raise
            if isinstance(first, ApiError):
                raise first
            return events

        events = await _call(request, opened)

        async def forward() -> AsyncIterator[str]:
            nonlocal admitted
            source, sent, retried = events, 0, False
            try:
                while True:
                    try:
                        async for event in source:
                            sent += 1
                            yield event
                        return
                    except Exception as error:
                        if not replica_gone(error):
                            raise
                        if sent or retried:
                            log.warning("a model replica failed while streaming (%s)", type(error).__name__)
                            yield error_event(unavailable("failed while streaming"))
                            return
                        retried = True
                        log.warning("a model replica failed before its stream began; retrying it")
                        try:
                            source = await opened()
                        except ApiError as refused:
                            yield error_event(refused)
                            return
                        except Exception as again:
                            if not replica_gone(again):
                                raise
                            yield error_event(unavailable("failed twice"))
                            return
            finally:
                source.cancel()
                admitted -= 1

        return StreamingResponse(forward(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    audio_routes(app, _transcribe)
    return app


async def _result(response: Any) -> Any:
    return await response


def _read_all(source: Any) -> bytes:
    source.seek(0)
    return source.read()
