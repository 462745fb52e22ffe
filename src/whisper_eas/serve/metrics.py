"""Prometheus metrics of one server, in its own registry (two apps in one process never collide)."""

from __future__ import annotations

import time
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
ENDPOINTS = ("/v1/audio/transcriptions", "/v1/audio/translations", "/v1/models", "/health", "/metrics")


class ServeMetrics:
    """Requests by endpoint and status, latency, audio seconds, windows per decoding round, queue."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("whisper_eas_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("whisper_eas_request_duration_seconds", "Time from request to the end of its "
                                 "response, by endpoint", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.audio = Counter("whisper_eas_audio_seconds", "Seconds of audio transcribed", registry=r)
        self.batch = Histogram("whisper_eas_batch_windows", "30 s windows decoded together per round",
                               buckets=BATCH_BUCKETS, registry=r)
        self.queue = Gauge("whisper_eas_queue_depth", "Requests accepted and waiting for a decoding slot",
                           registry=r)
        self.in_flight = Gauge("whisper_eas_requests_decoding", "Requests whose windows are being decoded",
                               registry=r)

    def watch(self, queue_depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        """Read the engine's queue at scrape time."""
        self.queue.set_function(queue_depth)
        self.in_flight.set_function(in_flight)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def endpoint_label(path: str) -> str:
    """A bounded label: a known endpoint, `/v1/models/{id}`, or `other` (no label per unknown URL)."""
    if path in ENDPOINTS:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    return "other"


class RequestMetrics:
    """ASGI middleware: counts every response by endpoint and status and times it to its last byte."""

    def __init__(self, app: Any, metrics: ServeMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500
        label = endpoint_label(scope.get("path", ""))

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(label, str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - started)
