"""Real processes for the reliability scenarios: a worker, a stand-in for cron, the wires."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.conftest import provider_env
from tests.pg import connect
from tests.worker_process import WorkerProcess, regnotify_worker_argv


@dataclass
class Ticker:
    """What pg_cron + the relay do in production: ask for a queue run every `every_s`."""

    app: Celery
    every_s: float = 1.0
    ticks: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.app.send_task("process_notification_queue", kwargs={"reason": "test-cron"})
                self.ticks += 1
            except Exception:
                # The broker may be down on purpose; cron would also just try again.
                continue

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)


@dataclass
class Stack:
    """The processes of one scenario."""

    database_url: str
    broker_url: str
    env: dict[str, str]
    app: Celery
    worker: WorkerProcess
    ticker: Ticker
    log_dir: Path

    def new_worker(self, name: str = "worker") -> WorkerProcess:
        """A fresh worker process (after the old one was killed)."""
        self.worker = WorkerProcess(regnotify_worker_argv(8), self.env,
                                    self.log_dir / f"{name}.log")
        return self.worker


@pytest.fixture()
def stack(tmp_path: Path, clean_db, redis_server, twilio_wire, resend_wire) -> Iterator[Stack]:
    """A worker (8 threads) on the test Redis, a 1 s ticker, retries tuned for test time."""
    from tasks.broker.app import create_app

    redis.Redis.from_url(redis_server.url).flushdb()
    env = provider_env(clean_db, redis_server.url, twilio_wire, resend_wire)
    env.update({
        "SWEEP_AFTER_S": "5",
        "PROVIDER_TIMEOUT_S": "2",
        "SEND_MAX_RETRIES": "12",
        "SEND_RETRY_BACKOFF_BASE": "0.2",
        "SEND_RETRY_BACKOFF_MAX": "3",
    })
    app = create_app()
    app.conf.broker_url = redis_server.url
    worker = WorkerProcess(regnotify_worker_argv(8), env, tmp_path / "worker.log")
    s = Stack(clean_db, redis_server.url, env, app, worker, Ticker(app), tmp_path)
    try:
        yield s
    finally:
        s.ticker.stop()
        s.worker.stop()
        app.close()


def seed_backlog(database_url: str, count: int, *, prefix: str = "+1555600") -> list[str]:
    """`count` registrations with both channels, each with one change, all due now."""
    with connect(database_url) as conn:
        ids = [r["id"] for r in conn.execute(
            "INSERT INTO registrations (customer_name, customer_phone, customer_email) "
            "SELECT 'Reliability ' || i, %s || lpad(i::text, 4, '0'), "
            "'r' || i || '@example.com' FROM generate_series(1, %s) AS i RETURNING id",
            (prefix, count))]
        conn.execute("UPDATE registrations SET current_stage = 'submitted_to_dmv'")
        conn.execute("UPDATE notification_queue SET send_after = now() - interval '1 second'")
    return [str(i) for i in ids]


def wait_drained(database_url: str, timeout_s: float) -> float:
    """Seconds until no queue row is pending and no delivery is queued/sending."""
    started = time.monotonic()
    with connect(database_url) as conn:
        while time.monotonic() - started < timeout_s:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM notification_queue WHERE NOT sent) AS pending, "
                "(SELECT count(*) FROM registration_notifications "
                " WHERE status IN ('queued', 'sending')) AS moving").fetchone()
            if row["pending"] == 0 and row["moving"] == 0:
                return time.monotonic() - started
            time.sleep(0.25)
    raise AssertionError(f"not drained after {timeout_s}s")


def sent_count(database_url: str) -> int:
    """Deliveries the database already counts as sent."""
    with connect(database_url) as conn:
        return conn.execute("SELECT count(*) AS n FROM registration_notifications "
                            "WHERE status = 'sent'").fetchone()["n"]
