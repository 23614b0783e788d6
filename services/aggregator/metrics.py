"""Prometheus metrics of the API, on a registry of the app's own (one per ``create_app``)."""

from __future__ import annotations

import time
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METRICS_CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
# Requests that matched no route share one label, so scanners cannot grow the label set.
UNMATCHED_ROUTE: Final = "unmatched"


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # CPU, memory and file descriptors of this process (process_*), as the default
        # registry would have them.
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "windpark_api_requests",
            "HTTP requests by route template, method and status",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "windpark_api_request_duration_seconds",
            "HTTP request latency by route template and method",
            ("method", "route"),
            registry=self.registry,
        )
        self.ingest = Counter(
            "windpark_api_ingest",
            "readings posted over HTTP, by outcome",
            ("outcome",),
            registry=self.registry,
        )
        self.reject_reasons = Counter(
            "windpark_api_ingest_reject_reasons",
            "reason codes of readings rejected over HTTP",
            ("code",),
            registry=self.registry,
        )
        for outcome in (
            "queued",
            "rejected",
            "too_large",
            "unsupported_media_type",
            "unavailable",
        ):
            self.ingest.labels(outcome)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request under its route template, such as
    ``/v1/turbines/{turbine_id}/latest``, never under its raw path."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # The router writes the matched route into the scope it was given.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
