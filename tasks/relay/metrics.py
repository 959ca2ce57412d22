"""Prometheus metrics of one relay app (GET /metrics)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response

from db import metrics as db_metrics
from db.connector import family_errors
from db.errors import DatabaseError
from tasks.coordination import worker_metrics

log = logging.getLogger(__name__)


class PipelineCollector(Collector):
    """Queue and delivery figures from the database, worker figures from Redis, per scrape."""

    def __init__(self, engine: Callable[[], Engine]) -> None:
        self._engine = engine

    def describe(self) -> list[Metric]:
        # Nothing to declare up front: registering must not query the database.
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("regnotify_database_up",
                               "1 when the last scrape could read the database")
        try:
            with family_errors(), self._engine().connect() as conn:
                queue = db_metrics.queue_figures(conn)
                deliveries = db_metrics.delivery_figures(conn)
                held = db_metrics.held_figures(conn)
                replies = db_metrics.reply_figures(conn)
                digests = db_metrics.reply_digest_figures(conn)
                unknown = db_metrics.outcome_unknown_figures(conn)
            up.add_metric([], 1.0)
        except (DatabaseError, RuntimeError) as exc:
            log.warning("metrics: database unavailable (%s)", type(exc).__name__)
            up.add_metric([], 0.0)
            queue, deliveries, held, unknown = None, [], None, None
            replies, digests = None, None
        yield up
        if queue is not None:
            yield GaugeMetricFamily("regnotify_queue_depth",
                                    "Pending notification_queue rows", value=queue.pending)
            yield GaugeMetricFamily("regnotify_queue_due",
                                    "Pending rows whose debounce window has closed",
                                    value=queue.due)
            yield GaugeMetricFamily("regnotify_queue_oldest_due_age_seconds",
                                    "How long the oldest due row has waited",
                                    value=queue.oldest_due_age_s)
        by_status = GaugeMetricFamily("regnotify_deliveries_24h",
                                      "Deliveries created in the last 24 h",
                                      labels=["channel", "status"])
        retried = GaugeMetricFamily("regnotify_delivery_retries_24h",
                                    "Attempts beyond the first, deliveries of the last 24 h",
                                    labels=["channel"])
        retries_by_channel: dict[str, int] = {}
        for d in deliveries:
            by_status.add_metric([d.channel, d.status], d.deliveries)
            retries_by_channel[d.channel] = retries_by_channel.get(d.channel, 0) + d.retries
        for channel, count in sorted(retries_by_channel.items()):
            retried.add_metric([channel], count)
        yield by_status
        yield retried
        if held is not None:
            held_now = GaugeMetricFamily("regnotify_deliveries_held",
                                         "Deliveries held for the customer's quiet hours",
                                         labels=["channel"])
            # Both channels always, so a dashboard sees 0 rather than no series.
            for channel in ("email", "sms"):
                held_now.add_metric([channel], held.get(channel, 0))
            yield held_now
        if replies is not None and digests is not None:
            yield from _reply_metrics(replies, digests)
        if unknown is not None:
            unknown_now = GaugeMetricFamily(
                "regnotify_deliveries_outcome_unknown",
                "Failed deliveries that may have been accepted all the same: not sent again "
                "until staff re-drive them (retry-failed)", labels=["channel"])
            for channel in ("email", "sms"):
                unknown_now.add_metric([channel], unknown.get(channel, 0))
            yield unknown_now
        yield from self._worker_metrics()

    def _worker_metrics(self) -> Iterator[Metric]:
        figures = worker_metrics.read()
        if figures is None:
            return
        latency = HistogramMetricFamily(
            "regnotify_provider_request_seconds", "Provider API request latency, from workers",
            labels=["provider"])
        for h in figures.latency:
            buckets = [(str(bound), count) for bound, count in h.buckets]
            buckets.append(("+Inf", h.count))
            latency.add_metric([h.provider], buckets, sum_value=h.sum)
        yield latency
        yield _counter("regnotify_provider_requests",
                       "Provider API requests by outcome, from workers", ["provider", "outcome"],
                       {tuple(key.partition(":")[::2]): n for key, n in figures.calls.items()})
        yield _counter("regnotify_send_retries",
                       "Sends scheduled for another attempt, from workers", ["channel"],
                       {(channel,): n for channel, n in figures.retries.items()})
        yield _counter("regnotify_queue_runs",
                       "process_notification_queue runs, by what started them", ["reason"],
                       {(reason,): n for reason, n in figures.queue_runs.items()})


def _reply_metrics(replies: dict[tuple[str, str], int],
                   digests: dict[str, int]) -> Iterator[Metric]:
    """Customers' texts and the e-mails that carry them to staff."""
    texts = GaugeMetricFamily(
        "regnotify_replies_24h", "Inbound texts of the last 24 h, by keyword kind (reply: no "
        "keyword) and sender (customer: a registration's phone, unknown: none)",
        labels=["kind", "sender"])
    # Every series always, so a dashboard sees 0 rather than no series.
    for kind in ("help", "opt_in", "opt_out", "reply"):
        for sender in ("customer", "unknown"):
            texts.add_metric([kind, sender], replies.get((kind, sender), 0))
    yield texts
    mails = GaugeMetricFamily(
        "regnotify_reply_digests", "E-mails to staff about replies: pending and sending now, "
        "sent and failed in the last 24 h", labels=["status"])
    for status in ("failed", "pending", "sending", "sent"):
        mails.add_metric([status], digests.get(status, 0))
    yield mails


class RelayMetrics:
    """The relay's counters, in a registry of their own so several apps can live in one process."""

    def __init__(self, engine: Callable[[], Engine] | None = None) -> None:
        self.registry = CollectorRegistry()
        if engine is not None:
            self.registry.register(PipelineCollector(engine))
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


def _counter(name: str, documentation: str, labels: list[str],
             counts: dict[tuple[str, ...], int]) -> CounterMetricFamily:
    """A counter family with one sample per label tuple, in label order."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, count in sorted(counts.items()):
        family.add_metric(list(values), count)
    return family
