"""Prometheus metrics of one relay app (GET /metrics)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response


class RelayMetrics:
    """The relay's counters, in a registry of their own so several apps can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ticks = Counter(
            "regnotify_relay_ticks", "Tick requests by source and outcome",
            ["source", "outcome"], registry=self.registry,
        )
        self.webhooks = Counter(
            "regnotify_relay_webhooks", "Provider webhooks by endpoint and outcome",
            ["endpoint", "outcome"], registry=self.registry,
        )
        self.listener_connected = Gauge(
            "regnotify_relay_listener_connected",
            "1 while the LISTEN connection on notification_tick is up", registry=self.registry,
        )
        self.listener_reconnects = Counter(
            "regnotify_relay_listener_reconnects", "LISTEN connections re-established",
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


async def metrics_endpoint(request: Request) -> Response:
    """GET /metrics."""
    metrics: RelayMetrics = request.app.state.relay.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
