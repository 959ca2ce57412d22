"""The real `regnotify relay` under uvicorn, spoken to over HTTP the way pg_net does."""

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

from tasks.cli.relay import is_loopback
from tasks.local.embedded_postgres import free_port
from tests.relay_helpers import RELAY_TOKEN, flush_broker, queued, queued_task_names, wait_for

pytest_plugins = ["tests.relay_helpers"]

REPO = Path(__file__).resolve().parents[1]
# Byte for byte what notification_tick() has pg_net send.
PG_NET_BODY = b'{"at": "2025-06-01T12:00:00.123456+00:00", "source": "pg_cron"}'
PG_NET_HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": "pg_net/0.14",
    "Accept": "*/*",
    "Authorization": f"Bearer {RELAY_TOKEN}",
}


def regnotify() -> list[str]:
    """The installed console script, or the module when it is not installed."""
    script = Path(sys.executable).parent / "regnotify"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tasks.cli"]


class RelayProcess:
    """`regnotify relay ...` in a child process, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                # Run outside the repository so no .env there changes the outcome.
                [*regnotify(), "relay", *args], env=env, cwd=log_path.parent, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )

    def log(self) -> str:
        """Everything it printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, url: str, timeout: float = 20.0) -> None:
        """Until /healthz answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"relay exited early:\n{self.log()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"relay not healthy after {timeout}s:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM (uvicorn's graceful shutdown), SIGKILL if it hangs; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def _assert_clean_exit(status: int, log: str) -> None:
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so
    # the parent sees how it ended.
    assert status in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log, log


def _env(clean_db: str, broker: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "TWILIO_",
                                                                      "RESEND_"))}
    env.update({
        "DATABASE_URL": clean_db,
        "CELERY_BROKER_URL": broker,
        "RELAY_TOKEN": RELAY_TOKEN,
        # Only POST /tick enqueues here, so the queue counts below are its doing.
        "RELAY_LISTEN": "false",
        "RELAY_SELF_TICK": "off",
        "RELAY_MAX_BODY_BYTES": "4096",
        # For the `python -m tasks.cli.main` fallback when the script is not installed.
        "PYTHONPATH": str(REPO),
        **extra,
    })
    return env


@pytest.fixture()
def relay(tmp_path: Path, clean_db: str, redis_server) -> Iterator[str]:
    """A running relay on a free port; yields its base URL."""
    port = free_port()
    process = RelayProcess(["--host", "127.0.0.1", "--port", str(port)],
                           _env(clean_db, redis_server.url), tmp_path / "relay.log")
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_healthy(url)
        flush_broker(redis_server.url)
        yield url
    finally:
        status = process.stop()
        log = process.log()
        flush_broker(redis_server.url)
    _assert_clean_exit(status, log)
    assert RELAY_TOKEN not in log


def test_the_pg_net_request_enqueues_process_notification_queue(relay, redis_server):
    with httpx.Client(base_url=relay, timeout=5) as client:
        response = client.post("/tick", content=PG_NET_BODY, headers=PG_NET_HEADERS)
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["coalesced"] is False and body["task_id"]
        assert queued_task_names(redis_server.url) == ["process_notification_queue"]

        again = client.post("/tick", content=PG_NET_BODY, headers=PG_NET_HEADERS)
        assert again.status_code == 202 and again.json()["coalesced"] is True
        assert queued(redis_server.url) == 1


def test_the_served_relay_refuses_bad_tokens_and_big_bodies(relay, redis_server):
    with httpx.Client(base_url=relay, timeout=5) as client:
        wrong = client.post("/tick", content=PG_NET_BODY,
                            headers={**PG_NET_HEADERS, "Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "Bearer" in wrong.headers["www-authenticate"]
        missing = client.post("/tick", content=PG_NET_BODY, headers={
            k: v for k, v in PG_NET_HEADERS.items() if k != "Authorization"})
        assert missing.status_code == 401

        declared = client.post("/tick", content=b" " * 5000, headers=PG_NET_HEADERS)
        assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(6):
            yield b" " * 1000

    # A fresh connection: the 413 above closed the previous one on purpose.
    with httpx.Client(base_url=relay, timeout=5) as client:
        chunked = client.post("/tick", content=chunks(), headers=PG_NET_HEADERS)
        assert chunked.status_code == 413
        assert client.get("/openapi.json").json()["paths"]["/tick"]["post"]["security"]
    assert queued(redis_server.url) == 0


def test_the_relay_will_not_start_without_a_token(tmp_path, clean_db, redis_server):
    env = _env(clean_db, redis_server.url)
    del env["RELAY_TOKEN"]
    result = subprocess.run([*regnotify(), "relay", "--port", str(free_port())], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "RELAY_TOKEN" in lines[0] and "--local-only" in lines[0]


def test_local_only_runs_without_a_token_on_loopback(tmp_path, clean_db, redis_server):
    env = _env(clean_db, redis_server.url)
    del env["RELAY_TOKEN"]
    port = free_port()
    process = RelayProcess(["--local-only", "--host", "0.0.0.0", "--port", str(port)], env,
                           tmp_path / "relay.log")
    try:
        process.wait_healthy(f"http://127.0.0.1:{port}")
        flush_broker(redis_server.url)
        response = httpx.post(f"http://127.0.0.1:{port}/tick", content=PG_NET_BODY,
                              headers={"Content-Type": "application/json"}, timeout=5)
        assert response.status_code == 202
        wait_for(lambda: queued(redis_server.url) == 1, timeout=5)
    finally:
        _assert_clean_exit(process.stop(), process.log())
        flush_broker(redis_server.url)
    assert "--local-only binds 127.0.0.1, not 0.0.0.0" in process.log()


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("127.0.0.2", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False),
    ("relay.example.com", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_cli_flags_reach_the_app(tmp_path, clean_db, monkeypatch, capsys):
    from tasks.cli.main import build_parser
    from tasks.cli.relay import prepare
    from tasks.exceptions import CommandError
    from tests.conftest import reset_process_state

    monkeypatch.chdir(tmp_path)  # away from any .env in the repository
    monkeypatch.setenv("DATABASE_URL", clean_db)
    monkeypatch.setenv("RELAY_TOKEN", RELAY_TOKEN)
    reset_process_state()
    parser = build_parser()
    try:
        app, host = prepare(parser.parse_args(
            ["relay", "--no-listen", "--self-tick", "--tick-interval", "0.5", "--host", "::"]))
        relay = app.state.relay
        assert host == "::" and relay.listener is None
        assert relay.ticker.mode == "on" and relay.ticker.interval_s == 0.5
        relay.stop()

        app, host = prepare(parser.parse_args(["relay", "--local-only", "--host", "10.0.0.5"]))
        assert host == "127.0.0.1" and app.state.relay.listener is not None
        assert app.state.relay.ticker.mode == "auto"
        assert "--local-only binds 127.0.0.1" in capsys.readouterr().err
        app.state.relay.stop()

        with pytest.raises(CommandError, match="--tick-interval"):
            prepare(parser.parse_args(["relay", "--tick-interval", "0"]))
        monkeypatch.delenv("RELAY_TOKEN")
        reset_process_state()
        with pytest.raises(CommandError, match="RELAY_TOKEN is not set"):
            prepare(parser.parse_args(["relay"]))
    finally:
        monkeypatch.undo()
        reset_process_state()


def test_the_access_log_keeps_no_query_string(tmp_path, clean_db, redis_server):
    # Staff searches are GETs (/staff?q=<phone>): the served relay's access
    # log says the path and status, never what was searched for.
    port = free_port()
    process = RelayProcess(["--host", "127.0.0.1", "--port", str(port)],
                           _env(clean_db, redis_server.url), tmp_path / "relay.log")
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_healthy(url)
        with httpx.Client(base_url=url, timeout=5) as client:
            assert client.get("/staff", params={"q": "+17135550101"}).status_code == 200
            client.get("/portal", params={"who": "ana@example.com"})
        deadline = time.monotonic() + 10
        while '"GET /portal HTTP/1.1"' not in process.log() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        status = process.stop()
    log = process.log()
    _assert_clean_exit(status, log)
    assert '"GET /staff HTTP/1.1" 200' in log and '"GET /portal HTTP/1.1"' in log, log
    assert "17135550101" not in log and "ana%40example.com" not in log and "?" not in "".join(
        line for line in log.splitlines() if "HTTP/1.1" in line), log
