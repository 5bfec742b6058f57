"""Prometheus metrics of the API: requests by route template, method and status.

Each app has its own ``CollectorRegistry`` (several apps in one process, as in tests,
do not clash); ``/metrics`` shows it together with the process-wide default registry,
where other parts of the cloud (ingest) may register theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class ApiMetrics:
    """The API's counters, in their own registry."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter("edgekit_api_requests", "HTTP requests answered",
                                ("route", "method", "status"), registry=self.registry)
        self.publishes = Counter("edgekit_api_publishes", "Bundle uploads by outcome",
                                 ("outcome",), registry=self.registry)
        self.artifact_bytes = Counter("edgekit_api_artifact_bytes",
                                      "Artifact bytes sent to clients", registry=self.registry)

    def render(self) -> bytes:
        """The text exposition of this registry and the default one."""
        return generate_latest(self.registry) + generate_latest(DEFAULT_REGISTRY)


class RequestCounter:
    """ASGI middleware: counts every HTTP answer by route template (not raw path)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()


def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: Prometheus text format."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
