"""Coalesced ticks and the wake-up at send_after, on a real Redis and a real worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.conftest import provider_env, reset_process_state
from tests.flow import change_stage
from tests.pg import connect, new_registration
from tests.worker_process import WorkerProcess, regnotify_worker_argv


@pytest.fixture()
def live_app(redis_server, clean_db, monkeypatch) -> Iterator[Celery]:
    """The module-level app publishing to the test Redis for real (not eager)."""
    from tasks.broker import wakeup
    from tasks.broker.app import app

    monkeypatch.setenv("CELERY_BROKER_URL", redis_server.url)
    monkeypatch.setenv("DATABASE_URL", clean_db)
    reset_process_state()
    saved = app.conf.broker_url
    app.conf.broker_url = redis_server.url
    _drop_connections(app)
    wakeup.reset_client()
    redis.Redis.from_url(redis_server.url).flushdb()
    try:
        yield app
    finally:
        _drop_connections(app)
        app.conf.broker_url = saved
        monkeypatch.undo()
        reset_process_state()
        wakeup.reset_client()


def _drop_connections(app: Celery) -> None:
    # Celery caches its connection and producer pools on first use; closing
    # them leaves the producer pool pointing at a closed pool, so let them go.
    app._pool = None
    app.amqp._producer_pool = None


def _queued(url: str, queue: str = "notifications") -> int:
    return int(redis.Redis.from_url(url).llen(queue))


def test_a_hundred_ticks_while_one_run_waits_enqueue_one(live_app, redis_server):
    from tasks.broker.wakeup import request_tick, run_started

    results = [request_tick() for _ in range(100)]
    assert results[0].task_id and not results[0].coalesced
    assert all(r.coalesced and r.task_id is None for r in results[1:])
    assert _queued(redis_server.url) == 1
    # Once the run starts, the next burst of ticks earns exactly one more run.
    run_started()
    more = [request_tick() for _ in range(100)]
    assert sum(not r.coalesced for r in more) == 1
    assert _queued(redis_server.url) == 2


def test_tick_and_send_commands_coalesce_like_every_other_tick(live_app, redis_server,
                                                              clean_db, capsys):
    from tasks.cli.main import main

    assert main(["tick"]) == 0
    assert "enqueued process_notification_queue" in capsys.readouterr().out
    assert main(["tick"]) == 0
    assert "this tick joins it" in capsys.readouterr().out
    with connect(clean_db) as c:
        reg = new_registration(c, notification_pref="email")
    assert main(["send", reg]) == 0
    assert "joins a queue run already waiting" in capsys.readouterr().out
    assert _queued(redis_server.url) == 1


def test_wakeups_are_not_stacked(live_app, redis_server):
    from tasks.broker.wakeup import arm_wakeup

    assert arm_wakeup(30.0) == 30.0
    assert arm_wakeup(40.0) is None  # one already armed sooner
    assert arm_wakeup(45.0) is None
    assert arm_wakeup(10.0) == 10.0  # sooner than the armed one: arm it
    assert arm_wakeup(None) is None
    # Countdown messages wait in Redis' unacked set only once a worker holds
    # them; here they sit in the queue.
    assert _queued(redis_server.url) == 2


def test_a_message_leaves_about_a_second_after_its_window_closes(
    tmp_path: Path, live_app, redis_server, clean_db, conn, twilio_wire, resend_wire
):
    conn.execute("UPDATE notification_config SET debounce_window = interval '2 seconds', "
                 "max_wait = interval '1 minute'")
    env = provider_env(clean_db, redis_server.url, twilio_wire, resend_wire)
    worker = WorkerProcess(regnotify_worker_argv(4), env, tmp_path / "worker.log")
    worker.start(live_app)
    try:
        regs = [new_registration(conn, customer_phone=f"+1555400{i:04d}",
                                 notification_pref="sms") for i in range(8)]
        live_app.send_task("process_notification_queue")  # the only tick: no cron here
        for reg in regs:
            change_stage(conn, reg, "documents_collected")
            time.sleep(0.4)
        # Staggered changes: every row gets its own wake-up; nothing polls.
        from tasks.broker.wakeup import request_tick

        request_tick()
        deadline = time.monotonic() + 30
        while twilio_wire.accepted_count() < len(regs) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
    assert twilio_wire.accepted_count() == len(regs), worker.log()
    with connect(clean_db) as c:
        due = {r["customer_phone"]: r["send_after"].timestamp() for r in c.execute(
            "SELECT r.customer_phone, q.send_after FROM notification_queue q "
            "JOIN registrations r ON r.id = q.registration_id")}
    delays = [s.received_at - due[s.to] for s in twilio_wire.sends()]
    assert all(d >= -0.05 for d in delays), delays  # never before the window closes
    assert max(delays) < 3.0, delays
