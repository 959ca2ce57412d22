"""A `regnotify up` child process for tests, and what they check of it."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg

from tasks.local.embedded_postgres import port_in_use

STACK_ENV = ("DATABASE_URL", "CELERY_BROKER_URL", "RELAY_TOKEN", "FLOWER_BASIC_AUTH",
             "SMS_PROVIDER", "EMAIL_PROVIDER", "TWILIO_ACCOUNT_SID", "RESEND_API_KEY")


class Up:
    """A `regnotify up` child with its output collected line by line."""

    def __init__(self, cwd: Path, ports: dict[str, int]) -> None:
        env = {k: v for k, v in os.environ.items() if k not in STACK_ENV}
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
        """Everything printed so far."""
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 90) -> str:
        """The first printed line containing `text`, waiting for it."""
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
        """Ctrl-C; returns how long `up` took to exit."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout)
        return time.monotonic() - started


def http_status(url: str, auth: str | None = None) -> int:
    """The HTTP status of a GET (with basic auth `user:password` when given)."""
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def up_env(root: Path) -> dict[str, str]:
    """What `up` wrote to .regnotify/up.env for other commands in its folder."""
    lines = (root / ".regnotify" / "up.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def deliver_one_change(conn: psycopg.Connection, name: str, phone: str, email: str, *,
                       before_waiting: Callable[[], None] | None = None,
                       timeout: float = 30) -> list[dict]:
    """Move a new registration one stage on and wait until both channels are sent."""
    # up's database has the default quiet hours: at night in Chicago the text
    # would (rightly) wait for the morning. Not what these tests are about.
    conn.execute("UPDATE notification_config SET quiet_hours_channels = '{}'")
    reg = conn.execute(
        "INSERT INTO registrations (customer_name, customer_phone, customer_email) "
        "VALUES (%s, %s, %s) RETURNING id", (name, phone, email)).fetchone()["id"]
    conn.execute("UPDATE registrations SET current_stage = 'sticker_ready' WHERE id = %s",
                 (reg,))
    if before_waiting is not None:
        before_waiting()
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = conn.execute("SELECT channel, status, provider FROM registration_notifications "
                            "WHERE registration_id = %s ORDER BY channel", (reg,)).fetchall()
        if len(rows) == 2 and all(r["status"] == "sent" for r in rows):
            break
        time.sleep(0.2)
    return rows


#: What `deliver_one_change` returns when the console providers sent both.
SENT_BY_CONSOLE = [{"channel": "email", "status": "sent", "provider": "console"},
                   {"channel": "sms", "status": "sent", "provider": "console"}]


def assert_stopped_cleanly(up: Up, ports: dict[str, int], state_root: Path) -> None:
    """Ctrl-C ends `up` with status 0 within 15 s, every port free, up.env gone."""
    took = up.interrupt()
    assert up.proc.returncode == 0, up.output()[-3000:]
    assert took < 15
    assert not any(port_in_use(p) for p in ports.values())
    assert not (state_root / ".regnotify" / "up.env").exists()
