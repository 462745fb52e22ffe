"""The same service as Ray Serve replicas: for more requests than one process's engine can decode.

Each replica builds its own runner and `BatchEngine` once (the app's lifespan runs in the replica)
and is the app `create_app` returns, so protocol, batching and errors are the single-process
server's; Ray Serve's proxy routes each HTTP request to a replica and replaces replicas that die.
Nothing is decoded twice: a request lives in exactly one replica.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whisper_eas.config import DEFAULT_PRUNE, PruneConfig
from whisper_eas.serve.app import ServeConfig


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


def deployment(spec: ModelSpec, config: ServeConfig, replicas: int | None = 1,
               autoscale: tuple[int, int] | None = None, cpus: float = 1.0, gpus: float = 0.0) -> Any:
    """A bound Ray Serve application: `replicas` fixed, or autoscaled between `autoscale` (min, max)."""
    from ray import serve

    def build():  # runs in each replica: the model is loaded there, once
        from whisper_eas.serve.app import create_app

        return create_app(spec.transcriber(), config)

    options: dict[str, Any] = {
        "name": "whisper-eas",
        "ray_actor_options": {"num_cpus": cpus, "num_gpus": gpus},
        # what one replica admits: decoding plus queued; beyond that Ray Serve queues at the proxy
        "max_ongoing_requests": config.max_batch + config.max_queue,
        "graceful_shutdown_timeout_s": config.request_timeout_s,
        "health_check_period_s": 5,
    }
    if autoscale is not None:
        low, high = autoscale
        options["autoscaling_config"] = {"min_replicas": low, "max_replicas": high,
                                         "target_ongoing_requests": config.max_batch}
    else:
        options["num_replicas"] = replicas
    return serve.deployment(serve.ingress(build)(), **options).bind()


def run(app: Any, host: str, port: int, address: str | None = None) -> None:
    """Start Ray (local, or `address`), serve `app` on host:port until interrupted, then shut down."""
    import ray
    from ray import serve

    def stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)  # run the `finally`: replicas drain in-flight requests as they shut down

    ray.init(address=address, include_dashboard=False, log_to_driver=True,
             ignore_reinit_error=True, configure_logging=False)
    signal.signal(signal.SIGTERM, stop)  # after ray.init, which installs its own fatal-signal handler
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(app, name="whisper-eas", route_prefix="/", blocking=False)
        while True:
            time.sleep(1.0)
    finally:
        serve.shutdown()
        ray.shutdown()
