"""A short debounce window leaves on time with no tick at all: the relay's due watch arms it.

A real `regnotify relay` (LISTEN on, its own ticker off) and a real worker;
pg_cron's job is paused for the test, so the only thing that can start a
queue run is the relay seeing a new earliest send_after
(tasks/relay/due_watch.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tasks.local.embedded_postgres import free_port
from tests.conftest import provider_env
from tests.flow import change_stage
from tests.pg import connect, new_registration
from tests.relay_helpers import RELAY_TOKEN
from tests.worker_process import WorkerProcess, regnotify_worker_argv

pytest_plugins = ["tests.relay_helpers"]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def no_cron_tick(clean_db: str) -> Iterator[None]:
    """Pause pg_cron's minute tick (where there is one) for the test."""
    with connect(clean_db) as c:
        has_cron = c.execute("SELECT to_regclass('cron.job') IS NOT NULL AS ok").fetchone()["ok"]
        if has_cron:
            c.execute("UPDATE cron.job SET active = false WHERE jobname = "
                      "'process-notification-queue'")
    try:
        yield
    finally:
        if has_cron:
            with connect(clean_db) as c:
                c.execute("UPDATE cron.job SET active = true WHERE jobname = "
                          "'process-notification-queue'")


@pytest.fixture()
def relay_process(tmp_path: Path, clean_db: str, redis_server, no_cron_tick) -> Iterator[str]:
    """`regnotify relay` that LISTENs and never ticks on its own."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update({"DATABASE_URL": clean_db, "CELERY_BROKER_URL": redis_server.url,
                "RELAY_TOKEN": RELAY_TOKEN, "RELAY_LISTEN": "true", "RELAY_SELF_TICK": "off",
                "PYTHONPATH": str(REPO)})
    log_path = tmp_path / "relay.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tasks.cli", "relay", "--host", "127.0.0.1",
             "--port", str(port)], env=env, cwd=tmp_path, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                health = httpx.get(f"{url}/healthz", timeout=1)
                if health.status_code == 200 and health.json().get("listener") == "connected":
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        yield log_path.read_text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("window_s", [2, 5])
def test_every_message_leaves_within_two_seconds_of_its_window_without_a_tick(
    window_s, tmp_path, live_broker, redis_server, clean_db, conn, twilio_wire, resend_wire,
    relay_process,
):
    from tasks.broker.app import app

    conn.execute("UPDATE notification_config SET debounce_window = %s, "
                 "max_wait = interval '1 minute'", (f"{window_s} seconds",))
    env = provider_env(clean_db, redis_server.url, twilio_wire, resend_wire)
    worker = WorkerProcess(regnotify_worker_argv(4), env, tmp_path / "worker.log")
    worker.start(app)
    try:
        # Let the relay's catch-up run (after its LISTEN) finish: from here on
        # nothing ticks but the bursts themselves.
        time.sleep(1.0)
        regs = [new_registration(conn, customer_phone=f"+1555410{i:04d}",
                                 notification_pref="sms") for i in range(4)]
        for reg in regs:
            change_stage(conn, reg, "documents_collected")
            # A second change inside the window folds into the same burst.
            change_stage(conn, reg, "submitted_to_dmv")
            time.sleep(0.7)
        deadline = time.monotonic() + window_s + 15
        while twilio_wire.accepted_count() < len(regs) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
    assert twilio_wire.accepted_count() == len(regs), worker.log() + relay_process()
    with connect(clean_db) as c:
        due = {r["customer_phone"]: r["send_after"].timestamp() for r in c.execute(
            "SELECT r.customer_phone, q.send_after FROM notification_queue q "
            "JOIN registrations r ON r.id = q.registration_id")}
    delays = [s.received_at - due[s.to] for s in twilio_wire.sends()]
    assert all(d >= -0.05 for d in delays), delays  # never before the window closes
    assert max(delays) < 2.0, delays


def test_the_due_watch_ticks_once_per_new_earliest_send_after(conn):
    from tasks.relay.due_watch import DueWatch

    ticks: list[str] = []
    watch = DueWatch(ticks.append)
    watch.check(conn)
    assert ticks == []  # nothing pending
    reg = new_registration(conn)
    change_stage(conn, reg, "documents_collected")
    watch.check(conn)
    watch.check(conn)
    assert ticks == ["due"]  # a burst opened: one run, not one per second
    # A later burst: the run at the earliest send_after arms the next one.
    later = new_registration(conn)
    conn.execute("UPDATE notification_config SET debounce_window = interval '10 minutes'")
    try:
        change_stage(conn, later, "documents_collected")
    finally:
        conn.execute("UPDATE notification_config SET debounce_window = interval '5 minutes'")
    watch.check(conn)
    assert ticks == ["due"]
    # The earliest one moved (another change in its burst): ask again.
    change_stage(conn, reg, "submitted_to_dmv")
    watch.check(conn)
    assert ticks == ["due", "due"]
