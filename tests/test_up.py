"""`regnotify up`: one command brings the stack up, Ctrl-C takes it down, state survives."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.embedded_postgres import free_port, port_in_use
from tests.pg import connect

pytestmark = pytest.mark.e2e

_STACK_ENV = ("DATABASE_URL", "CELERY_BROKER_URL", "RELAY_TOKEN", "FLOWER_BASIC_AUTH",
              "SMS_PROVIDER", "EMAIL_PROVIDER", "TWILIO_ACCOUNT_SID", "RESEND_API_KEY")


class Up:
    """A `regnotify up` child with its output collected line by line."""

    def __init__(self, cwd: Path, ports: dict[str, int]) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _STACK_ENV}
        argv = [sys.executable, "-m", "tasks.cli", "up", "--concurrency", "2"]
        for name, port in ports.items():
            argv += [f"--{name}-port", str(port)]
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if text in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not printed:\n{self.output()[-4000:]}")

    def interrupt(self, timeout: float = 20) -> float:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout)
        return time.monotonic() - started


@pytest.fixture()
def state_root() -> Iterator[Path]:
    # Not under pytest's tmp (mode 700): the postgres user must reach the data.
    root = Path(tempfile.mkdtemp(prefix="regnotify-up-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _get(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _env_file(root: Path) -> dict[str, str]:
    lines = (root / ".regnotify" / "up.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_up_runs_everything_and_stops_cleanly(state_root: Path):
    ports = {name: free_port() for name in ("postgres", "redis", "relay", "flower")}
    up = Up(state_root, ports)
    try:
        up.wait_for("regnotify is up")
        flower_line = up.wait_for("user admin")
        password = flower_line.split("password")[1].strip()
        assert _get(f"http://127.0.0.1:{ports['relay']}/healthz") == 200
        assert _get(f"http://127.0.0.1:{ports['flower']}/") == 401
        assert _get(f"http://127.0.0.1:{ports['flower']}/", f"admin:{password}") == 200

        env = _env_file(state_root)
        assert env["FLOWER_BASIC_AUTH"] == f"admin:{password}"
        with connect(env["DATABASE_URL"]) as conn:
            conn.execute("UPDATE notification_config SET debounce_window = interval '1 second'")
            reg = conn.execute(
                "INSERT INTO registrations (customer_name, customer_phone, customer_email) "
                "VALUES ('Up Test', '+15557770001', 'up@example.com') RETURNING id"
            ).fetchone()["id"]
            conn.execute("UPDATE registrations SET current_stage = 'sticker_ready' "
                         "WHERE id = %s", (reg,))
            time.sleep(1.2)
            # Another command in the same folder finds the stack through up.env.
            tick = subprocess.run([sys.executable, "-m", "tasks.cli", "tick"], cwd=state_root,
                                  env={k: v for k, v in os.environ.items()
                                       if k not in _STACK_ENV},
                                  capture_output=True, text=True, timeout=30)
            assert tick.returncode == 0, tick.stderr
            deadline = time.monotonic() + 30
            rows: list[dict] = []
            while time.monotonic() < deadline:
                rows = conn.execute("SELECT channel, status, provider FROM "
                                    "registration_notifications ORDER BY channel").fetchall()
                if len(rows) == 2 and all(r["status"] == "sent" for r in rows):
                    break
                time.sleep(0.2)
        assert rows == [{"channel": "email", "status": "sent", "provider": "console"},
                        {"channel": "sms", "status": "sent", "provider": "console"}]
        up.wait_for("SMS console-sms-")  # the console provider shows the text
    finally:
        took = up.interrupt()
    assert up.proc.returncode == 0, up.output()[-3000:]
    assert took < 15
    assert not any(port_in_use(p) for p in ports.values())
    assert not (state_root / ".regnotify" / "up.env").exists()

    # State survives a restart.
    again = Up(state_root, ports)
    try:
        again.wait_for("regnotify is up")
        assert password in again.wait_for("user admin")
        with connect(_env_file(state_root)["DATABASE_URL"]) as conn:
            count = conn.execute("SELECT count(*) AS n FROM registration_notifications"
                                 ).fetchone()["n"]
        assert count == 2
    finally:
        again.interrupt()
    assert again.proc.returncode == 0


def test_up_refuses_a_taken_port_with_a_clear_error(state_root: Path):
    ports = {name: free_port() for name in ("postgres", "redis", "relay", "flower")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["relay"]))
        taken.listen()
        up = Up(state_root, ports)
        up.proc.wait(30)
    assert up.proc.returncode == 2
    out = up.output()
    assert f"port {ports['relay']} on 127.0.0.1 is already in use" in out
    assert "--relay-port" in out and "Traceback" not in out
