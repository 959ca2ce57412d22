"""Counters the workers keep in Redis so the relay's /metrics can show them.

Workers are separate processes (and machines): a Prometheus registry in each
would need scraping each. A few Redis hash increments per send are cheaper
than that and survive worker restarts. Failures here never touch a send.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis

from tasks.celery_app import broker_url

log = logging.getLogger(__name__)

#: Histogram bucket bounds for provider request latency, seconds.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_PREFIX = "regnotify:metrics:"

_lock = threading.Lock()
_client: redis.Redis | None = None
_warned = False


def _redis() -> redis.Redis | None:
    global _client
    url = broker_url()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    with _lock:
        if _client is None:
            _client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        return _client


def reset_client() -> None:
    """Forget the client (tests that change the broker)."""
    global _client
    with _lock:
        _client = None


def _fire(fn_name: str, *commands: tuple) -> None:
    global _warned
    client = _redis()
    if client is None:
        return
    try:
        pipe = client.pipeline(transaction=False)
        for name, *args in commands:
            getattr(pipe, name)(*args)
        pipe.execute()
        _warned = False
    except redis.RedisError as exc:
        if not _warned:
            log.warning("metrics (%s) not recorded: %s", fn_name, type(exc).__name__)
            _warned = True


def record_provider_call(provider: str, outcome: str, seconds: float) -> None:
    """One request to a provider: how long it took and how it ended (sent, retry, failed)."""
    key = f"{_PREFIX}latency:{provider}"
    commands: list[tuple] = [("hincrbyfloat", key, "sum", seconds), ("hincrby", key, "count", 1),
                             ("hincrby", f"{_PREFIX}calls", f"{provider}:{outcome}", 1)]
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            commands.append(("hincrby", key, f"le:{bound}", 1))
    _fire("provider_call", *commands)


def record_retry(channel: str) -> None:
    """A send scheduled to be tried again."""
    _fire("retry", ("hincrby", f"{_PREFIX}retries", channel, 1))


def record_queue_run(reason: str) -> None:
    """One run of process_notification_queue."""
    _fire("queue_run", ("hincrby", f"{_PREFIX}queue_runs", reason, 1))


@dataclass(frozen=True)
class Latency:
    """Cumulative (non-decreasing) histogram of one provider's request latency."""

    provider: str
    buckets: list[tuple[float, int]]  # (upper bound, cumulative count)
    count: int
    sum: float


@dataclass(frozen=True)
class WorkerFigures:
    """Everything the workers recorded."""

    latency: list[Latency]
    calls: dict[str, int]
    retries: dict[str, int]
    queue_runs: dict[str, int]


def read() -> WorkerFigures | None:
    """The recorded figures, or None when Redis does not answer."""
    client = _redis()
    if client is None:
        return None
    try:
        latency: list[Latency] = []
        for provider in ("twilio", "resend", "console"):
            raw = {k.decode(): v.decode()
                   for k, v in client.hgetall(f"{_PREFIX}latency:{provider}").items()}
            if not raw:
                continue
            # Each bucket was incremented for every bound >= the observation,
            # so the counts are already cumulative.
            buckets = [(b, int(raw.get(f"le:{b}", 0))) for b in LATENCY_BUCKETS]
            latency.append(Latency(provider, buckets, int(raw.get("count", 0)),
                                   float(raw.get("sum", 0.0))))

        def _ints(key: str) -> dict[str, int]:
            return {k.decode(): int(v) for k, v in client.hgetall(_PREFIX + key).items()}

        return WorkerFigures(latency, _ints("calls"), _ints("retries"), _ints("queue_runs"))
    except redis.RedisError:
        return None


class TimedProvider:
    """Wraps a provider adapter so every request to it is timed and counted."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.name: str = inner.name  # type: ignore[attr-defined]

    def __getattr__(self, attr: str) -> object:
        return getattr(self._inner, attr)

    def _timed(self, method: str, success: str, *args: object) -> object:
        from tasks.providers.base import ProviderError

        started = time.perf_counter()
        try:
            result = getattr(self._inner, method)(*args)
        except ProviderError as exc:
            outcome = "retry" if exc.transient else "failed"
            record_provider_call(self.name, outcome, time.perf_counter() - started)
            raise
        record_provider_call(self.name, success, time.perf_counter() - started)
        return result

    def send(self, message: object) -> str:
        """The inner send, timed."""
        return str(self._timed("send", "sent", message))

    def find_sent(self, message: object, since: object) -> str | None:
        """The inner lookup, timed (SMS providers only)."""
        found = self._timed("find_sent", "lookup", message, since)
        return None if found is None else str(found)
