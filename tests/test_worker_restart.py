"""`regnotify worker` starts afresh after Celery ends it with an unrecoverable error."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tasks.local.embedded_postgres import free_port
from tasks.local.embedded_redis import EmbeddedRedis
from tasks.worker import worker_restart
from tests.conftest import provider_env
from tests.worker_process import WorkerProcess, regnotify_worker_argv


def _until(check: Callable[[], bool], timeout: float, what: str, proc: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s; worker log:\n{proc.log()}")


@pytest.mark.e2e
def test_worker_comes_back_after_celery_gives_up(
    tmp_path: Path, clean_db: str, twilio_wire, resend_wire
) -> None:
    from tasks.broker.app import create_app

    broker = EmbeddedRedis(port=free_port())
    broker.start()
    app = create_app()
    app.conf.broker_url = broker.url
    env = provider_env(clean_db, broker.url, twilio_wire, resend_wire)
    worker = WorkerProcess(regnotify_worker_argv(2), env, tmp_path / "worker.log")
    admin = redis.Redis.from_url(broker.url)
    try:
        worker.start(app)
        assert worker.proc is not None
        pid = worker.proc.pid

        # A broker error that is not a connection error ends Celery's worker
        # with "Unrecoverable error" (what kombu's close race does in production).
        admin.execute_command("ACL", "SETUSER", "default", "-brpop")
        _until(lambda: "starting it again" in worker.log(), 30, "no restart", worker)
        admin.execute_command("ACL", "SETUSER", "default", "+@all")
        assert "Unrecoverable error" in worker.log()

        _until(lambda: bool(app.control.ping(timeout=0.5)), 30, "no answer after the restart",
               worker)
        assert worker.proc.poll() is None and worker.proc.pid == pid  # exec: same process
        assert worker.log().count(" ready.") >= 2

        # Asked to stop, it stops for good: no restart, exit status 0.
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(20) == 0
        assert worker.log().count("starting it again") == 1
    finally:
        worker.kill()
        app.close()
        broker.stop()


def test_restart_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(worker_restart.RESTARTS_ENV, raising=False)
    assert worker_restart.should_restart(0, 1.0) == (False, 0)
    assert worker_restart.should_restart(None, 1.0) == (False, 0)
    assert worker_restart.should_restart(1, 1.0) == (True, 1)

    monkeypatch.setenv(worker_restart.RESTARTS_ENV, str(worker_restart.MAX_QUICK_RESTARTS - 1))
    assert worker_restart.should_restart(1, 1.0) == (True, worker_restart.MAX_QUICK_RESTARTS)
    monkeypatch.setenv(worker_restart.RESTARTS_ENV, str(worker_restart.MAX_QUICK_RESTARTS))
    assert worker_restart.should_restart(1, 1.0)[0] is False
    # A worker that ran long enough was healthy: its count starts over.
    assert worker_restart.should_restart(1, worker_restart.HEALTHY_AFTER_S + 1) == (True, 1)

    assert [worker_restart.backoff_s(n) for n in (1, 2, 3, 10)] == [1, 2, 4,
                                                                      worker_restart.MAX_BACKOFF_S]
