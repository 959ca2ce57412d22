"""Worker counters are summed in memory and written to Redis in one pipeline a second."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from tasks.coordination import worker_metrics
from tasks.local.embedded_postgres import free_port
from tasks.local.embedded_redis import EmbeddedRedis
from tests.conftest import reset_process_state


@pytest.fixture()
def own_redis(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[EmbeddedRedis]:
    """A Redis of the test's own, so it can be stopped and started again."""
    server = EmbeddedRedis(port=free_port(), data_dir=tmp_path)
    server.start()
    monkeypatch.setenv("CELERY_BROKER_URL", server.url)
    reset_process_state()
    try:
        yield server
    finally:
        server.stop()
        reset_process_state()


def _hash(server: EmbeddedRedis, key: str) -> dict[str, str]:
    client = redis.Redis.from_url(server.url)
    raw = client.hgetall(f"regnotify:metrics:{key}")
    return {k.decode(): v.decode() for k, v in raw.items()}


def test_counters_reach_redis_within_a_flush_interval(own_redis: EmbeddedRedis) -> None:
    for _ in range(3):
        worker_metrics.record_provider_call("twilio", "sent", 0.03)
    worker_metrics.record_retry("sms")
    assert _hash(own_redis, "calls") == {}, "written before the flush: not buffered"

    deadline = time.monotonic() + worker_metrics.FLUSH_INTERVAL_S * 3
    while time.monotonic() < deadline and not _hash(own_redis, "calls"):
        time.sleep(0.05)

    assert _hash(own_redis, "calls") == {"twilio:sent": "3"}
    assert _hash(own_redis, "retries") == {"sms": "1"}
    latency = _hash(own_redis, "latency:twilio")
    assert latency["count"] == "3"
    assert float(latency["sum"]) == pytest.approx(0.09)
    assert latency["le:0.05"] == "3" and "le:0.025" not in latency


def test_increments_survive_a_redis_outage(own_redis: EmbeddedRedis) -> None:
    worker_metrics.record_queue_run("relay")
    worker_metrics.flush()
    own_redis.stop()

    worker_metrics.record_queue_run("relay")
    worker_metrics.record_provider_call("resend", "sent", 1.5)
    worker_metrics.flush()  # fails: Redis is down; the increments are kept

    own_redis.start()
    worker_metrics.flush()

    assert _hash(own_redis, "queue_runs") == {"relay": "2"}
    figures = worker_metrics.read()
    assert figures is not None
    (resend,) = [lat for lat in figures.latency if lat.provider == "resend"]
    assert resend.count == 1 and resend.sum == pytest.approx(1.5)
    assert dict(resend.buckets)[1.0] == 0 and dict(resend.buckets)[2.5] == 1
