"""Processes dying under load: the worker (kill -9), Redis (data lost), PostgreSQL (restart)."""

from __future__ import annotations

import time

import pytest

from tests.reliability import ledger
from tests.reliability.conftest import seed_backlog, sent_count, wait_drained
from tests.reliability.report import record

pytestmark = pytest.mark.reliability

BACKLOG = 250  # registrations x 2 channels


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _drain_under_way(stack, twilio_wire, resend_wire) -> None:
    """A backlog draining through the worker and the 1 s ticker, with some sends done."""
    twilio_wire.configure(latency=0.02)
    resend_wire.configure(latency=0.02)
    seed_backlog(stack.database_url, BACKLOG)
    stack.worker.start(stack.app)
    stack.ticker.start()
    _wait(lambda: sent_count(stack.database_url) >= 80, 60, "some progress")


def test_worker_killed_mid_drain_including_after_acceptance(stack, twilio_wire, resend_wire):
    twilio_wire.configure(latency=0.02)
    resend_wire.configure(latency=0.02)
    # These numbers' messages are accepted, then the answer stalls past the
    # client timeout: the kill lands between acceptance and the database write.
    stalled = [f"+1555600{i:04d}" for i in range(1, 6)]
    for phone in stalled:
        twilio_wire.script(phone, ["timeout_after_accept:8"])
    seed_backlog(stack.database_url, BACKLOG)
    stack.worker.start(stack.app)
    stack.app.send_task("process_notification_queue")
    _wait(lambda: sum(twilio_wire.accepted_count(p) for p in stalled) >= 3
          and sent_count(stack.database_url) >= 60, 60, "stalled sends and some progress")
    stack.worker.kill()
    assert sent_count(stack.database_url) < 2 * BACKLOG  # the kill landed mid-drain

    stack.new_worker("worker-after-kill").start(stack.app)
    stack.ticker.start()
    took = wait_drained(stack.database_url, 120)
    result = ledger.take(stack.database_url, twilio_wire, resend_wire)
    record("worker kill -9 mid-drain (+ maybe-sent)", result, took)
    result.assert_clean()
    assert result.sent == 2 * BACKLOG
    for phone in stalled:
        assert twilio_wire.accepted_count(phone) == 1


def test_redis_lost_for_ten_seconds_mid_drain(stack, redis_server, twilio_wire, resend_wire):
    _drain_under_way(stack, twilio_wire, resend_wire)
    redis_server.kill()
    time.sleep(10)
    redis_server.start()  # empty: everything Redis held is gone
    recovered = time.monotonic()
    took = wait_drained(stack.database_url, 150)
    result = ledger.take(stack.database_url, twilio_wire, resend_wire)
    record("Redis down 10 s, restarted empty", result, time.monotonic() - recovered)
    result.assert_clean()
    assert result.sent == 2 * BACKLOG
    assert took > 0


def test_postgres_restarted_mid_drain(stack, pg_cluster, twilio_wire, resend_wire):
    _drain_under_way(stack, twilio_wire, resend_wire)
    pg_cluster.stop("fast")
    time.sleep(3)
    pg_cluster.start()
    recovered = time.monotonic()
    wait_drained(stack.database_url, 150)
    result = ledger.take(stack.database_url, twilio_wire, resend_wire)
    record("PostgreSQL restarted mid-drain", result, time.monotonic() - recovered)
    result.assert_clean()
    assert result.sent == 2 * BACKLOG
