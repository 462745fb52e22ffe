"""The same service on Ray Serve: for more requests than one process's engine can decode.

Two deployments. The ingress (`ingress.create_ingress`, one light replica, no model) speaks HTTP
as the single-process app does and sends each checked request's upload bytes to one model replica
through a `DeploymentHandle`. Each model replica (`ModelReplica`, N of them or autoscaled) builds
its runner and `BatchEngine` once and opens, batches and decodes the requests it is given with the
single-process app's own functions (`open_job`, `wait_for`, `job_events`), so transcripts,
batching and errors are the same. Nothing is decoded twice, except the one retry of a request
whose replica died (the ingress's answer to a replica's death: retry once, then a 503 envelope).
"""

from __future__ import annotations

import io
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from anyio import to_thread

from whisper_eas.config import DEFAULT_PRUNE, PruneConfig
from whisper_eas.serve.app import ServeConfig, admit, as_api_error, job_events, open_job, wait_for
from whisper_eas.serve.engine import BatchEngine
from whisper_eas.serve.metrics import ServeMetrics
from whisper_eas.serve.protocol import ApiError, TranscriptionRequest, render
from whisper_eas.serve.uploads import remove_folder, request_folder, save_upload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What each replica loads (picklable: it travels to the replica processes)."""

    model: str | None
    prune: PruneConfig | None
    folder_config: bool  # True: the engine folder's own config (DEFAULT_PRUNE, which does not survive pickling)
    backend: str
    device: str
    engine_dir: str | None
    batch_size: int

    def transcriber(self):
        from whisper_eas.transcribe import Transcriber

        prune: Any = DEFAULT_PRUNE if self.folder_config else self.prune
        return Transcriber.from_model(self.model, prune, self.backend, self.device,
                                      Path(self.engine_dir) if self.engine_dir else None, batch_size=self.batch_size,
                                      serve=True)


class ModelReplica:
    """One model replica: the runner, loaded once, and its engine; answers the ingress's calls.

    Replies are values, not exceptions (an `ApiError` is returned whole), so only a failure of the
    replica itself reaches the ingress as a Ray error: that is what it retries.
    """

    def __init__(self, spec: ModelSpec, config: ServeConfig):
        self.config = config
        self.transcriber = spec.transcriber()
        self.metrics = ServeMetrics()
        for part in (self.metrics.requests, self.metrics.latency):
            self.metrics.registry.unregister(part)  # the ingress's
        self.engine = BatchEngine(config.max_batch, config.max_queue, on_batch=self.metrics.batch.observe)
        self.metrics.watch(lambda: self.engine.queue_depth, lambda: self.engine.in_flight)
        self.engine.start()

    async def transcribe(self, data: bytes, filename: str, spec: TranscriptionRequest) -> tuple[str, str] | ApiError:
        """(body, media type) of the rendered transcript, or the error's envelope as `ApiError`."""
        folder = request_folder()
        try:
            job = await self._open(data, filename, spec, folder)
            try:
                result = await wait_for(job, self.config.request_timeout_s)
            except BaseException as error:
                raise as_api_error(error, filename) from None
            self.metrics.audio.inc(result.duration_s)
            return render(result, spec)
        except ApiError as error:
            return error
        finally:
            remove_folder(folder)

    async def stream(self, data: bytes, filename: str, spec: TranscriptionRequest) -> AsyncIterator[Any]:
        """None once the upload is opened (or its `ApiError`, and nothing more), then the events."""
        folder = request_folder()
        try:
            try:
                job = await self._open(data, filename, spec, folder)
            except ApiError as error:
                yield error
                return
            yield None
            async for event in job_events(job, filename, self.config.request_timeout_s, self.metrics):
                yield event
        finally:
            remove_folder(folder)

    async def _open(self, data: bytes, filename: str, spec: TranscriptionRequest, folder: Path):
        """The upload saved and opened as the single-process app opens it, submitted to the engine."""
        admit(self.engine)
        try:
            path = await to_thread.run_sync(save_upload, io.BytesIO(data), filename, folder)
            job = await open_job(self.transcriber, self.config, spec, path, filename)
        except BaseException:
            self.engine.release()
            raise
        self.engine.submit(job)
        return job

    def health(self) -> dict[str, Any]:
        """What the single-process app's /health says, for this replica (`pid`: which one)."""
        ok = self.engine.alive
        return {"status": "ok" if ok else "unavailable", "model": self.config.model_name,
                "queue_depth": self.engine.queue_depth, "decoding": self.engine.in_flight, "pid": os.getpid()}

    def metrics_text(self) -> bytes:
        return self.metrics.render()

    def check_health(self) -> None:
        """Ray Serve's periodic check: a replica whose decoding thread is gone is replaced."""
        if not self.engine.alive:
            raise RuntimeError("the decoding thread is gone")

    def __del__(self) -> None:  # Serve's graceful shutdown: in-flight requests have drained
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.stop(self.config.request_timeout_s)


class Ingress:
    """The ingress deployment's state: the handle to the model replicas; its app is built in the
    replica (`__serve_build_asgi_app__`), so nothing of FastAPI travels pickled."""

    def __init__(self, model: Any, config: ServeConfig, multilingual: bool, capacity: int):
        self.model, self.config, self.multilingual, self.capacity = model, config, multilingual, capacity

    def __serve_build_asgi_app__(self) -> Any:
        from whisper_eas.serve.ingress import create_ingress

        self.asgi = create_ingress(self.model, self.config, self.multilingual, self.capacity)  # (`app` is Serve's)
        return self.asgi

    def drain(self) -> int:
        """Refuse new requests from now on (503 `shutting_down`); how many are still in flight.
        Called by the command on SIGTERM until it says 0: Serve's own shutdown closes the HTTP
        proxy at once, which would drop the connections of requests still being answered."""
        self.asgi.state.draining = True
        return self.asgi.state.in_flight()


def deployment(spec: ModelSpec, config: ServeConfig, replicas: int | None = 1,
               autoscale: tuple[int, int] | None = None, cpus: float = 1.0, gpus: float = 0.0,
               multilingual: bool = False) -> Any:
    """A bound Ray Serve application: the ingress in front of `replicas` model replicas (fixed), or
    autoscaled between `autoscale` (min, max)."""
    from ray import serve

    per_replica = config.max_batch + config.max_queue  # what one replica's engine admits
    options: dict[str, Any] = {
        "name": "whisper-eas-model",
        "ray_actor_options": {"num_cpus": cpus, "num_gpus": gpus},
        "max_ongoing_requests": per_replica,
        "graceful_shutdown_timeout_s": config.request_timeout_s,
        "health_check_period_s": 5,
    }
    if autoscale is not None:
        low, high = autoscale
        options["autoscaling_config"] = {"min_replicas": low, "max_replicas": high,
                                         "target_ongoing_requests": config.max_batch}
    else:
        options["num_replicas"] = replicas
    capacity = per_replica * (autoscale[1] if autoscale is not None else replicas or 1)
    model = serve.deployment(ModelReplica, **options).bind(spec, config)
    ingress = serve.deployment(serve.ingress()(Ingress), name="whisper-eas", num_replicas=1,
                               ray_actor_options={"num_cpus": 0},  # HTTP only: the cores are the replicas'
                               max_ongoing_requests=capacity + 32,  # beyond capacity: 429s, answered at once
                               graceful_shutdown_timeout_s=config.request_timeout_s)
    return ingress.bind(model, config, multilingual, capacity)


def run(app: Any, host: str, port: int, address: str | None = None, log_level: str = "info",
        grace_s: float = 600.0) -> None:
    """Start Ray (local, or `address`), serve `app` on host:port until interrupted, then shut down.
    `log_level` holds for Ray Serve's controller, proxy and replicas too (access lines at debug only),
    so a quiet server is quiet in every process. On SIGTERM the requests in flight are answered
    first (up to `grace_s`), then Serve and Ray shut down."""
    import ray
    from ray import serve

    def stop(_signum: int, _frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second SIGTERM must not cut the drain short
        raise SystemExit(0)  # run the `finally`: in-flight requests are answered, then everything stops

    logs = {"log_level": log_level.upper(), "enable_access_log": log_level == "debug"}
    ray.init(address=address, include_dashboard=False, log_to_driver=True,
             ignore_reinit_error=True, configure_logging=False)
    signal.signal(signal.SIGTERM, stop)  # after ray.init, which installs its own fatal-signal handler
    try:
        serve.start(http_options={"host": host, "port": port}, logging_config=logs)
        serve.run(app, name="whisper-eas", route_prefix="/", blocking=False, logging_config=logs)
        while True:
            time.sleep(1.0)
    finally:
        try:
            _drain(grace_s)
        except KeyboardInterrupt:  # Ctrl-C while draining: stop now
            pass
        serve.shutdown()
        ray.shutdown()


def _drain(grace_s: float) -> None:
    """Until the ingress has nothing in flight (or `grace_s` has passed): it refuses new requests
    meanwhile. Nothing to wait for when the app never started."""
    from ray import serve

    deadline = time.monotonic() + grace_s
    try:
        ingress = serve.get_app_handle("whisper-eas")
        while ingress.drain.remote().result(timeout_s=10) and time.monotonic() < deadline:
            time.sleep(0.5)
    except Exception as error:  # no app (it failed to start), or the ingress is gone: shut down as is
        log.warning("could not drain the ingress before shutting down (%s)", type(error).__name__)
