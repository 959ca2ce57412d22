"""`regnotify relay --workers N`: N processes answer, one of them LISTENs and ticks.

Real processes under uvicorn's supervisor, the real database: the workers
elect their leader by an advisory lock, every worker's /healthz speaks for
the relay, and when the leader dies another takes over.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tasks.local.embedded_postgres import free_port
from tasks.relay.leader import LEADER_KEY
from tests.relay_helpers import RELAY_TOKEN
from tests.test_relay_process import REPO, RelayProcess

pytest_plugins = ["tests.relay_helpers"]

VERIFY = {"TWILIO_VERIFY_SERVICE_SID": "VA" + "0" * 32, "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
          "TWILIO_AUTH_TOKEN": "not-used-here"}


def _env(clean_db: str, broker: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "TWILIO_",
                                                                      "RESEND_", "SUPABASE_"))}
    env.update({"DATABASE_URL": clean_db, "CELERY_BROKER_URL": broker,
                "RELAY_TOKEN": RELAY_TOKEN, "RELAY_SELF_TICK": "on",
                "PYTHONPATH": str(REPO), **extra})
    return env


def leaders(conn: psycopg.Connection) -> list[str]:
    """application_name of every session holding a relay leader lock."""
    return [r["application_name"] for r in conn.execute(
        "SELECT a.application_name FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid) "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::bigint::oid",
        (LEADER_KEY,))]


def listeners(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) AS n FROM pg_stat_activity "
                        "WHERE application_name = 'regnotify-relay-listener'").fetchone()["n"]


def wait_until(check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


@pytest.fixture()
def two_workers(tmp_path: Path, clean_db: str, redis_server) -> Iterator[tuple[str, RelayProcess]]:
    port = free_port()
    process = RelayProcess(["--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                           _env(clean_db, redis_server.url, **VERIFY), tmp_path / "relay.log")
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_healthy(url, timeout=60)
        yield url, process
    finally:
        process.stop()


def test_two_workers_elect_one_listener_and_both_speak_for_the_relay(two_workers, conn):
    url, process = two_workers
    assert "2 workers" in process.log()
    # Exactly one worker holds the lock and LISTENs.
    assert wait_until(lambda: len(leaders(conn)) == 1 and listeners(conn) == 1), (
        leaders(conn), process.log())
    seen: set[str] = set()

    def both_answered() -> bool:
        # A new connection each time: the kernel hands them to either worker.
        body = httpx.get(f"{url}/healthz", timeout=5).json()
        if body["listener"] != "connected":
            # A standby reports the leader's LISTEN as of its last probe, at
            # most a second old: one taken before the leader connected says so.
            return False
        assert body["ticker"] == "own", body
        seen.add(body["worker"])
        return seen == {"leader", "standby"}

    assert wait_until(both_answered), seen
    assert listeners(conn) == 1 and len(leaders(conn)) == 1


def test_when_the_leader_dies_another_worker_takes_over(two_workers, conn):
    url, process = two_workers
    assert wait_until(lambda: len(leaders(conn)) == 1 and listeners(conn) == 1)
    [first] = leaders(conn)
    pid = int(first.rsplit("-", 1)[1])
    os.kill(pid, signal.SIGKILL)
    # The survivor (or the worker uvicorn starts in its place) leads and LISTENs.
    assert wait_until(lambda: leaders(conn) not in ([], [first]) and listeners(conn) == 1), (
        leaders(conn), process.log())
    [second] = leaders(conn)
    assert second != first
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def test_several_workers_with_console_sign_in_are_refused_with_the_fix(tmp_path, clean_db,
                                                                       redis_server):
    process = RelayProcess(["--host", "127.0.0.1", "--port", str(free_port()),
                            "--workers", "3"], _env(clean_db, redis_server.url),
                           tmp_path / "relay.log")
    assert process.proc.wait(60) != 0
    log = process.log()
    assert "--workers 3" in log and "--workers 1" in log and "TWILIO_VERIFY_SERVICE_SID" in log
    assert "Traceback" not in log
