"""The FastAPI app: OpenAI's audio endpoints over one `Transcriber`, batched by `BatchEngine`.

A request is admitted (or refused with 429 while the queue is full) before its body is read, its
form is checked field by field, its upload is saved and opened off the event loop exactly as
`trt-transcribe` opens a file, and its windows are decoded with every other request's. Every
failure leaves as OpenAI's error envelope; an unexpected one is a 500 and a log line, never a
traceback sent to the client.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from whisper_eas.audio import AudioError, probe_duration
from whisper_eas.errors import WhisperEasError
from whisper_eas.results import Segment, TranscriptionResult
from whisper_eas.serve.engine import BatchEngine, EngineStopped, Job, QueueFull
from whisper_eas.serve.metrics import RequestMetrics, ServeMetrics
from whisper_eas.serve.protocol import (WHISPER_ALIAS, ApiError, TranscriptionRequest, delta_event, done_event,
                                        envelope, error_event, parse_form, render)
from whisper_eas.serve.uploads import BodyLimit, UploadTooLarge, remove_folder, request_folder, save_upload, \
    too_large_message
from whisper_eas.transcribe import Transcriber

log = logging.getLogger("whisper_eas.serve")

DISCONNECT_POLL_S = 0.25  # how often a waiting request checks that its client is still there


@dataclass(frozen=True)
class ServeConfig:
    """The server's limits and identity (the `whisper-eas serve` flags)."""

    model_name: str
    api_key: str | None = None
    max_upload_mb: float = 25.0  # OpenAI's limit
    max_batch: int = 16
    max_queue: int = 64
    request_timeout_s: float = 600.0
    max_audio_s: float | None = 4 * 3600.0  # longest decoded audio; None: no limit (a tiny FLAC can hold hours)

    @property
    def models(self) -> tuple[str, ...]:
        return (self.model_name, WHISPER_ALIAS)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


def create_app(transcriber: Transcriber, config: ServeConfig) -> FastAPI:
    """The service app; the engine thread starts and stops with the app's lifespan."""
    metrics = ServeMetrics()
    engine = BatchEngine(config.max_batch, config.max_queue, on_batch=metrics.batch.observe)
    metrics.watch(lambda: engine.queue_depth, lambda: engine.in_flight)
    multilingual = transcriber.runner.tokenizer.multilingual

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        yield
        await to_thread.run_sync(engine.stop, config.request_timeout_s)

    app, authorize = base_app(config, metrics, lifespan)
    app.state.engine, app.state.metrics, app.state.config = engine, metrics, config

    @app.get("/health")
    async def health() -> JSONResponse:
        ok = engine.alive
        body = {"status": "ok" if ok else "unavailable", "model": config.model_name,
                "queue_depth": engine.queue_depth, "decoding": engine.in_flight, "pid": os.getpid()}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def _transcribe(request: Request, task: str) -> Response:
        authorize(request)
        admit(engine)
        folder = request_folder()
        try:
            job, spec, filename = await _open_job(request, task, folder)
        except BaseException:
            engine.release()
            remove_folder(folder)
            raise
        engine.submit(job)
        if spec.stream:
            job.future.add_done_callback(lambda _f: remove_folder(folder))  # also if the stream never starts
            return StreamingResponse(_events(job, filename, folder), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            result = await wait_for(job, config.request_timeout_s, request.is_disconnected)
        except BaseException as error:
            raise as_api_error(error, filename) from None
        finally:
            job.cancel()
            remove_folder(folder)
        metrics.audio.inc(result.duration_s)
        body, media = render(result, spec)
        return Response(body, media_type=media)

    async def _open_job(request: Request, task: str, folder: Path) -> tuple[Job, TranscriptionRequest, str]:
        spec, upload = await read_form(request, task, config, multilingual)
        try:
            filename = upload.filename or "upload"
            path = await to_thread.run_sync(save_upload, upload.file, filename, folder)
        finally:
            await upload.close()
        return await open_job(transcriber, config, spec, path, filename), spec, filename

    async def _events(job: Job, filename: str, folder: Path) -> AsyncIterator[str]:
        try:
            async for event in job_events(job, filename, config.request_timeout_s, metrics):
                yield event
        finally:
            remove_folder(folder)

    audio_routes(app, _transcribe)
    return app


def base_app(config: ServeConfig, metrics: ServeMetrics, lifespan: Any,
             more_metrics: Callable[[], Awaitable[bytes]] | None = None) -> tuple[FastAPI, Callable[[Request], None]]:
    """The app's frame, shared with the Ray ingress: envelopes for every error, the key check, the
    model list, /metrics (with `more_metrics()` appended), the upload limit; the caller adds /health
    and the audio routes."""
    created = int(time.time())
    app = FastAPI(title="whisper-eas", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if error.status_code == 404 else None
        return JSONResponse(envelope(str(error.detail), code=kind), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(envelope("the server failed on this request; see its log", type="server_error",
                                     code="internal_error"), status_code=500)

    def authorize(request: Request) -> None:
        if config.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), config.api_key.encode()):
            raise ApiError(401, "Incorrect API key provided" if header else
                           "You didn't provide an API key (Authorization: Bearer KEY)",
                           code="invalid_api_key")

    @app.get("/metrics")
    async def metrics_endpoint(request: Request) -> Response:
        authorize(request)
        body = metrics.render() + (await more_metrics() if more_metrics is not None else b"")
        return Response(body, media_type=metrics.content_type)

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        authorize(request)
        return JSONResponse({"object": "list", "data": [_model(name, created) for name in config.models]})

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> JSONResponse:
        authorize(request)
        if model_id not in config.models:
            raise ApiError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
        return JSONResponse(_model(model_id, created))

    app.add_middleware(BodyLimit, max_bytes=config.max_upload_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)  # outermost: counts the 413s and 500s too
    return app, authorize


def audio_routes(app: FastAPI, handle: Callable[[Request, str], Awaitable[Response]]) -> None:
    """OpenAI's two audio endpoints, each `handle(request, task)` with its task (the single-process
    app and the Ray ingress handle them differently)."""

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        return await handle(request, "transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: Request) -> Response:
        return await handle(request, "translate")


def admit(engine: BatchEngine) -> None:
    """Reserve the engine's place for a request before its body is read, or refuse it (429, 503)."""
    try:
        engine.admit()
    except QueueFull as full:
        raise ApiError(429, str(full), type="rate_limit_error", code="queue_full",
                       headers={"Retry-After": str(full.retry_after)}) from None
    except EngineStopped as stopped:
        raise ApiError(503, str(stopped), type="server_error", code="shutting_down",
                       headers={"Retry-After": "5"}) from None


async def read_form(request: Request, task: str, config: ServeConfig,
                    multilingual: bool) -> tuple[TranscriptionRequest, UploadFile]:
    """The request's fields, checked, and its upload (the caller closes it); `ApiError` naming the
    first problem (too large, malformed, a bad field, no file)."""
    try:
        form = await request.form(max_files=1, max_fields=32)
    except UploadTooLarge:
        raise ApiError(413, too_large_message(config.max_upload_bytes), param="file",
                       code="file_too_large") from None
    except Exception as error:  # malformed multipart, too many fields, a field over 1 MB
        detail = getattr(error, "detail", None) or str(error) or type(error).__name__
        raise ApiError(400, f"could not read the multipart form: {detail}", code="invalid_form") from None
    try:
        spec = parse_form(form, task, config.models, multilingual)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "you must provide a file (multipart field 'file')", param="file",
                           code="missing_required_parameter")
    except BaseException:
        await form.close()
        raise
    return spec, upload


async def open_job(transcriber: Transcriber, config: ServeConfig, spec: TranscriptionRequest, path: Path,
                   filename: str) -> Job:
    """Open a saved upload exactly as `trt-transcribe` opens a file, off the event loop; its job,
    ready to submit. Audio problems are `ApiError`s naming the client's file name."""
    _check_length(config, probe_duration(path), filename)  # the header's claim, before any decoding
    try:
        chosen = transcriber.with_settings(**spec.settings())
        state = await to_thread.run_sync(chosen.open, path)
        _check_length(config, state.duration_s, filename)
        if not spec.needs_timestamps(state.duration_s):
            chosen = chosen.with_settings(without_timestamps=True)
    except BaseException as error:
        raise as_api_error(error, filename, path) from None
    loop = asyncio.get_running_loop()
    return Job(chosen, state, loop.create_future())


def _check_length(config: ServeConfig, duration_s: float | None, filename: str) -> None:
    if duration_s is not None and config.max_audio_s is not None and duration_s > config.max_audio_s:
        raise ApiError(400, f"{filename}: the audio is {duration_s / 60:.1f} min long; this server takes at most "
                            f"{config.max_audio_s / 60:g} min (--max-audio-minutes)", param="file",
                       code="audio_too_long")


async def wait_for(job: Job, timeout_s: float,
                   disconnected: Callable[[], Awaitable[bool]] | None = None) -> TranscriptionResult:
    """The job's result; cancelled when `disconnected()` says the client went away, 504 past the
    timeout. (Cancelling the waiting task cancels the job too: the Ray replica's way.)"""
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            done, _ = await asyncio.wait({job.future}, timeout=DISCONNECT_POLL_S)
            if done:
                return job.future.result()
            if disconnected is not None and await disconnected():
                job.cancel()
                raise asyncio.CancelledError()
            if time.monotonic() > deadline:
                job.cancel()
                raise ApiError(504, f"the transcription took longer than this server's request timeout "
                                    f"({timeout_s:g} s)", type="server_error", code="timeout")
    except asyncio.CancelledError:
        job.cancel()
        raise


async def job_events(job: Job, filename: str, timeout_s: float, metrics: ServeMetrics) -> AsyncIterator[str]:
    """Server-sent events: a delta per decoded segment as each 30 s window is final, then done."""
    queue: asyncio.Queue[list[Segment] | None] = asyncio.Queue()
    job.on_segments = queue.put_nowait
    job.future.add_done_callback(lambda _f: queue.put_nowait(None))
    deadline = time.monotonic() + timeout_s
    first = True
    try:
        while True:
            try:
                batch = await asyncio.wait_for(queue.get(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                job.cancel()
                yield error_event(ApiError(504, "the transcription took longer than this server's request "
                                                f"timeout ({timeout_s:g} s)", type="server_error", code="timeout"))
                return
            if batch is None:
                break
            for segment in batch:
                text = segment.text.lstrip() if first else segment.text
                first = False
                yield delta_event(text)
        try:
            result = job.future.result()
        except BaseException as error:
            yield error_event(as_api_error(error, filename))
            return
        metrics.audio.inc(result.duration_s)
        yield done_event(result)
    finally:
        job.cancel()


def _model(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "whisper-eas"}


def as_api_error(error: BaseException, filename: str, path: Path | None = None) -> BaseException:
    """The envelope a failure is sent as; audio problems are named by the client's file name."""
    if isinstance(error, (ApiError, asyncio.CancelledError)):
        return error
    if isinstance(error, AudioError):
        return ApiError(400, f"{filename}: {error.problem}", param="file", code="invalid_audio")
    if isinstance(error, WhisperEasError):
        message = str(error)
        if path is not None:
            message = message.replace(str(path), filename)
        return ApiError(400, message, code="invalid_request")
    log.error("transcription failed: %s: %s", type(error).__name__, error, exc_info=error)
    return ApiError(500, "the server failed on this request; see its log", type="server_error",
                    code="internal_error")
