"""LISTEN notification_tick on the real cluster (across a restart) and the relay's own ticker."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from db.connection import make_engine
from tasks.relay import create_app
from tasks.relay.listener import Listener
from tests.pg import connect
from tests.relay_helpers import flush_broker, queued_task_names, relay_settings, wait_for

pytest_plugins = ["tests.relay_helpers"]


class Recorder:
    """A tick callback that remembers the sources it was called with."""

    def __init__(self) -> None:
        self.sources: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, source: str) -> None:
        with self._lock:
            self.sources.append(source)

    def count(self, source: str) -> int:
        with self._lock:
            return self.sources.count(source)


def fire_tick(url: str) -> str:
    """`SELECT notification_tick()` as pg_cron runs it; returns the `at` its NOTIFY carries."""
    with connect(url) as conn:
        row = conn.execute(
            "SELECT notification_tick() AS how, "
            "json_build_object('at', now())->>'at' AS at").fetchone()
    assert row["how"] == "notify"
    return row["at"]


def heard(listener: Listener, at: str) -> bool:
    """Whether the listener received the NOTIFY sent with this `at`."""
    return any(json.loads(p).get("at") == at for p in list(listener.recent_payloads))


@pytest.fixture()
def listener(clean_db: str) -> Iterator[tuple[Listener, Recorder]]:
    """A started listener on the test database with a recording callback."""
    recorder = Recorder()
    listener = Listener(clean_db, recorder, backoff_initial_s=0.1, backoff_max_s=1.0,
                        poll_s=0.2)
    listener.start()
    try:
        assert listener.wait_connected(10)
        yield listener, recorder
    finally:
        listener.stop()


def test_a_real_notification_tick_notify_reaches_the_callback(listener, clean_db):
    lst, recorder = listener
    assert recorder.count("listen") == 1  # the catch-up tick after LISTEN
    at = fire_tick(clean_db)
    wait_for(lambda: heard(lst, at), timeout=5)
    wait_for(lambda: recorder.count("notify") >= 1, timeout=5)


def test_listen_survives_a_postgresql_restart(listener, clean_db, pg_cluster, caplog):
    caplog.set_level(logging.INFO, logger="tasks.relay")
    lst, recorder = listener
    before = fire_tick(clean_db)
    wait_for(lambda: heard(lst, before), timeout=5)

    pg_cluster.restart()
    wait_for(lambda: lst.connects >= 2 and lst.connected, timeout=30)
    assert lst.reconnects >= 1
    assert "reconnected and listening again" in caplog.text
    assert "connection lost" in caplog.text

    notifies_before = recorder.count("notify")
    after = fire_tick(clean_db)
    wait_for(lambda: heard(lst, after), timeout=5)
    wait_for(lambda: recorder.count("notify") > notifies_before, timeout=5)
    # Every LISTEN asked for a catch-up run: NOTIFYs sent while down are lost.
    assert recorder.count("listen") >= 2


def test_the_app_enqueues_a_run_for_a_notify_and_reports_the_listener(live_broker, clean_db):
    settings = relay_settings(database_url=clean_db, celery_broker_url=live_broker,
                              relay_listen=True)
    with TestClient(create_app(settings)) as client:
        relay = client.app.state.relay
        assert relay.listener.wait_connected(10)
        health = client.get("/healthz").json()
        assert health["listener"] == "connected"
        # The catch-up run after LISTEN; flush it (and the coalescing marker).
        wait_for(lambda: queued_task_names(live_broker), timeout=5)
        flush_broker(live_broker)
        at = fire_tick(clean_db)
        wait_for(lambda: heard(relay.listener, at), timeout=5)
        assert wait_for(lambda: queued_task_names(live_broker), timeout=5) == [
            "process_notification_queue"]
    assert relay.listener is not None and not relay.listener.connected


def test_the_listener_keeps_trying_while_the_database_is_unreachable(caplog):
    from tasks.local.embedded_postgres import free_port

    caplog.set_level(logging.WARNING, logger="tasks.relay")
    recorder = Recorder()
    lst = Listener(f"postgresql://postgres@127.0.0.1:{free_port()}/x", recorder,
                   backoff_initial_s=0.05, backoff_max_s=0.1)
    lst.start()
    try:
        wait_for(lambda: caplog.text.count("reconnecting in") >= 3, timeout=5)
        assert not lst.connected and recorder.sources == []
    finally:
        lst.stop()


# ── The own ticker ───────────────────────────────────────────────────────────

NO_CRON_DB = "regnotify_relay_nocron"


@pytest.fixture(scope="module")
def no_cron_url(pg_cluster) -> str:
    """A database of the test cluster without pg_cron (it serves one database only)."""
    pg_cluster.create_database(NO_CRON_DB)
    return pg_cluster.url.rsplit("/", 1)[0] + f"/{NO_CRON_DB}"


def test_without_a_pg_cron_job_the_relay_ticks_on_its_own(live_broker, no_cron_url):
    settings = relay_settings(database_url=no_cron_url, celery_broker_url=live_broker,
                              relay_self_tick="auto", relay_tick_interval_s=0.1)
    with TestClient(create_app(settings)) as client:
        relay = client.app.state.relay
        assert relay.ticker.wait_active(5)
        assert relay.ticker.cron_scheduled is False
        wait_for(lambda: relay.ticker.ticks >= 3, timeout=5)
        assert queued_task_names(live_broker) == ["process_notification_queue"]
        assert client.get("/healthz").json()["ticker"] == "own"
        # The run started (a worker would say so): the next own tick enqueues again.
        from tasks.broker.wakeup import run_started

        run_started()
        wait_for(lambda: len(queued_task_names(live_broker)) == 2, timeout=5)


def test_with_the_pg_cron_job_the_own_ticker_stays_idle(cron_enabled, live_broker, clean_db):
    with connect(clean_db) as conn:
        job = conn.execute("SELECT active FROM cron.job "
                           "WHERE jobname = 'process-notification-queue'").fetchone()
    assert job and job["active"]
    settings = relay_settings(database_url=clean_db, celery_broker_url=live_broker,
                              relay_self_tick="auto", relay_tick_interval_s=0.1)
    with TestClient(create_app(settings)) as client:
        relay = client.app.state.relay
        wait_for(lambda: relay.ticker.cron_scheduled is True, timeout=5)
        assert client.get("/healthz").json()["ticker"] == "cron"
        threading.Event().wait(0.4)
        assert relay.ticker.ticks == 0 and not relay.ticker.active
        assert queued_task_names(live_broker) == []


def test_self_tick_on_ticks_even_with_a_cron_job(live_broker, clean_db):
    settings = relay_settings(database_url=clean_db, celery_broker_url=live_broker,
                              relay_self_tick="on", relay_tick_interval_s=0.1)
    with TestClient(create_app(settings)) as client:
        relay = client.app.state.relay
        wait_for(lambda: relay.ticker.ticks >= 2, timeout=5)
        assert queued_task_names(live_broker) == ["process_notification_queue"]


def test_the_cron_check_reads_cron_job(clean_db, no_cron_url, pg_cluster):
    from db.webhooks import cron_job_scheduled

    for url, expected in ((no_cron_url, False), (clean_db, pg_cluster.cron)):
        engine = make_engine(url, pool_size=1)
        try:
            with engine.connect() as conn:
                assert cron_job_scheduled(conn) is expected
        finally:
            engine.dispose()
