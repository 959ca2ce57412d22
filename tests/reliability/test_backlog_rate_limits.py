"""A backlog drains at the providers' real limits: nothing lost, nothing twice, no errors.

The wires enforce a per-second limit like Resend (2 requests/s) and Twilio
(20429 above the rate); the worker is a real process on a real broker.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import provider_env
from tests.pg import connect
from tests.reliability import ledger
from tests.reliability.conftest import seed_backlog, wait_drained
from tests.reliability.report import record
from tests.worker_process import WorkerProcess, regnotify_worker_argv

pytestmark = pytest.mark.reliability

REGISTRATIONS = 300
RESEND_RPS = 2
TWILIO_RPS = 20
BATCH = 100

#: What must never appear in the worker's log while a backlog drains.
FORBIDDEN = re.compile(r"MaxRetriesExceeded|raised unexpected|\bERROR\b")


def email_bound_s(count: int) -> float:
    """The fastest Resend's limit allows: one batch request per 1/rate seconds."""
    return math.ceil(count / BATCH) / RESEND_RPS


def sms_bound_s(count: int) -> float:
    return count / TWILIO_RPS


def test_backlog_of_300_both_drains_at_the_limits_exactly_once(stack, twilio_wire, resend_wire):
    stack.env.update({
        "TWILIO_RATE_PER_S": str(TWILIO_RPS),
        "RESEND_RATE_PER_S": str(RESEND_RPS),
        # Production sweeps after 120 s; 5 s would re-dispatch tasks that are
        # merely waiting their turn in the queue.
        "SWEEP_AFTER_S": "60",
    })
    twilio_wire.configure(max_rps=TWILIO_RPS, latency=0.02)
    resend_wire.configure(max_rps=RESEND_RPS, latency=0.05)
    seed_backlog(stack.database_url, REGISTRATIONS)
    stack.new_worker().start(stack.app)

    started = time.time()
    stack.app.send_task("process_notification_queue")
    stack.ticker.every_s = 5.0
    stack.ticker.start()
    took = wait_drained(stack.database_url, 120)

    result = ledger.take(stack.database_url, twilio_wire, resend_wire)
    record(f"backlog: {REGISTRATIONS} registrations x both at {RESEND_RPS}/s e-mail, "
           f"{TWILIO_RPS}/s SMS", result, took)
    result.assert_clean()
    assert result.sent == 2 * REGISTRATIONS
    assert twilio_wire.accepted_count() == REGISTRATIONS
    assert resend_wire.accepted_count() == REGISTRATIONS

    emails_done = max(s.accepted_at for s in resend_wire.sends()) - started
    texts_done = max(s.accepted_at for s in twilio_wire.sends()) - started
    assert emails_done <= 1.25 * email_bound_s(REGISTRATIONS) + 4, emails_done
    assert texts_done <= 1.25 * sms_bound_s(REGISTRATIONS), texts_done
    # Batches, not 300 single e-mails: three requests at 2/s.
    assert resend_wire.stats()["requests"] <= math.ceil(REGISTRATIONS / BATCH) + 2

    # No second ever held more than the limit, so no 429 was needed.
    assert resend_wire.max_in_any_second() <= RESEND_RPS
    assert twilio_wire.max_in_any_second() <= TWILIO_RPS
    assert "429" not in twilio_wire.stats()["by_status"]

    log = stack.worker.log_path.read_text(errors="replace")
    assert not FORBIDDEN.findall(log), FORBIDDEN.findall(log)[:5]


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_worker_killed_during_a_batch_loses_and_duplicates_nothing(stack, twilio_wire,
                                                                  resend_wire):
    count = 150
    # The first batch is accepted and its answer stalls: the kill lands
    # between Resend's acceptance and the database write.
    resend_wire.script("r1@example.com", ["timeout_after_accept:6"])
    seed_backlog(stack.database_url, count)
    with connect(stack.database_url) as conn:
        conn.execute("UPDATE registrations SET notification_pref = 'email'")
    stack.worker.start(stack.app)
    stack.app.send_task("process_notification_queue")
    _wait(lambda: resend_wire.accepted_count() >= 1, 60, "a batch accepted")
    stack.worker.kill()
    with connect(stack.database_url) as conn:
        batches = conn.execute(
            "SELECT email_batch_id, count(*) AS n, bool_and(status = 'sending') AS sending "
            "FROM registration_notifications WHERE email_batch_id IS NOT NULL "
            "GROUP BY 1").fetchall()
    assert any(b["sending"] for b in batches), batches  # the kill landed mid-batch

    stack.new_worker("worker-after-kill").start(stack.app)
    stack.ticker.start()
    took = wait_drained(stack.database_url, 120)
    result = ledger.take(stack.database_url, twilio_wire, resend_wire)
    record("worker kill -9 during a Resend batch", result, took)
    result.assert_clean()
    assert result.sent == count
    assert resend_wire.accepted_count() == count
    assert not resend_wire.duplicates()
    # The batch in flight went again under its key and was answered from Resend's record.
    assert resend_wire.stats()["outcomes"].get("replayed", 0) >= 1


@pytest.fixture()
def rabbit_vhost() -> Iterator[str]:
    """A RabbitMQ vhost of its own on the machine's broker (127.0.0.1:5672, guest)."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed")
    vhost = f"regnotify-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True,
                   timeout=60)
    try:
        subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                       check=True, capture_output=True, timeout=60)
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)


def test_rabbitmq_broker_two_workers_share_the_limits_through_postgresql(
    tmp_path, clean_db, rabbit_vhost, twilio_wire, resend_wire
):
    from tasks.broker.app import create_app

    env = provider_env(clean_db, rabbit_vhost, twilio_wire, resend_wire)
    env.update({
        "TWILIO_RATE_PER_S": str(TWILIO_RPS),
        "RESEND_RATE_PER_S": str(RESEND_RPS),
        "SWEEP_AFTER_S": "60",
        "PROVIDER_TIMEOUT_S": "2",
    })
    env.pop("COORDINATION_REDIS_URL", None)
    twilio_wire.configure(max_rps=TWILIO_RPS, latency=0.02)
    resend_wire.configure(max_rps=RESEND_RPS, latency=0.05)
    seed_backlog(clean_db, REGISTRATIONS)
    app = create_app()
    app.conf.broker_url = rabbit_vhost
    workers = [WorkerProcess([*regnotify_worker_argv(4), "-n", f"w{n}@%h"], env,
                             tmp_path / f"worker{n}.log")
               for n in (1, 2)]
    try:
        for worker in workers:
            worker.start(app)
        # start() returns on any pong: wait for both nodes.
        _wait(lambda: len(app.control.ping(timeout=1)) == 2, 60, "both workers")
        started = time.time()
        app.send_task("process_notification_queue")
        wait_drained(clean_db, 120)
    finally:
        for worker in workers:
            worker.stop()
        app.close()

    result = ledger.take(clean_db, twilio_wire, resend_wire)
    result.assert_clean()
    assert result.sent == 2 * REGISTRATIONS
    texts_done = max(s.accepted_at for s in twilio_wire.sends()) - started
    assert texts_done <= 1.25 * sms_bound_s(REGISTRATIONS), texts_done
    for worker in workers:
        log = worker.log_path.read_text(errors="replace")
        assert "unavailable" not in log, log[-3000:]
    # Two workers, one limit: the providers never saw more than it in a second
    # (without the shared limit they would see twice it), however late a
    # thread or the stand-in's busy process made an arrival: the gate logs a
    # call until its answer is back, after the provider counted it.
    assert resend_wire.max_in_any_second() <= RESEND_RPS
    assert twilio_wire.max_in_any_second() <= TWILIO_RPS
    assert "429" not in twilio_wire.stats()["by_status"]
    with connect(clean_db) as conn:
        names = {r["name"] for r in conn.execute("SELECT name FROM coordination_slots")}
    assert {"regnotify:ratelimit:sms", "regnotify:ratelimit:email"} <= names
    for worker in workers:
        log = worker.log_path.read_text(errors="replace")
        assert not FORBIDDEN.findall(log), FORBIDDEN.findall(log)[:5]
