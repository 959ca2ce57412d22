"""`regnotify up`: one command brings the stack up, Ctrl-C takes it down, state survives."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.local.embedded_postgres import free_port
from tests.pg import connect
from tests.up_process import (
    SENT_BY_CONSOLE,
    STACK_ENV,
    Up,
    assert_stopped_cleanly,
    deliver_one_change,
    http_status,
    up_env,
)

pytestmark = pytest.mark.e2e

def test_up_runs_everything_and_stops_cleanly(state_root: Path):
    ports = {name: free_port() for name in ("postgres", "redis", "relay", "flower")}
    up = Up(state_root, ports)
    try:
        up.wait_for("regnotify is up")
        up.wait_for("providers  sms: console (prints, sends nothing), "
                    "email: console (prints, sends nothing)")
        flower_line = up.wait_for("user admin")
        password = flower_line.split("password")[1].strip()
        assert http_status(f"http://127.0.0.1:{ports['relay']}/healthz") == 200
        assert http_status(f"http://127.0.0.1:{ports['flower']}/") == 401
        assert http_status(f"http://127.0.0.1:{ports['flower']}/", f"admin:{password}") == 200

        env = up_env(state_root)
        assert env["FLOWER_BASIC_AUTH"] == f"admin:{password}"
        with connect(env["DATABASE_URL"]) as conn:
            conn.execute("UPDATE notification_config SET debounce_window = interval '1 second'")

            def tick_from_the_same_folder() -> None:
                # Another command in the same folder finds the stack through up.env.
                time.sleep(1.2)
                tick = subprocess.run([sys.executable, "-m", "tasks.cli", "tick"],
                                      cwd=state_root, capture_output=True, text=True, timeout=30,
                                      env={k: v for k, v in os.environ.items()
                                           if k not in STACK_ENV})
                assert tick.returncode == 0, tick.stderr

            rows = deliver_one_change(conn, "Up Test", "+15557770001", "up@example.com",
                                      before_waiting=tick_from_the_same_folder)
        assert rows == SENT_BY_CONSOLE
        up.wait_for("SMS console-sms-")  # the console provider shows the text
    finally:
        assert_stopped_cleanly(up, ports, state_root)

    # State survives a restart.
    again = Up(state_root, ports)
    try:
        again.wait_for("regnotify is up")
        assert password in again.wait_for("user admin")
        with connect(up_env(state_root)["DATABASE_URL"]) as conn:
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
