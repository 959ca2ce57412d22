"""One `regnotify up` per state folder; port flags are honoured or refused, never ignored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.local.embedded_postgres import free_port
from tests.up_process import STACK_ENV, Up, assert_stopped_cleanly, http_status, up_env

pytestmark = pytest.mark.e2e


def _up(cwd: Path, *flags: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in STACK_ENV}
    return subprocess.run([sys.executable, "-m", "tasks.cli", "up", *flags], cwd=cwd,
                          env={**base, **env}, capture_output=True, text=True, timeout=90)


def test_a_second_up_in_the_same_folder_is_refused_and_harms_nothing(state_root: Path):
    ports = {name: free_port() for name in ("postgres", "redis", "relay", "flower")}
    first = Up(state_root, ports)
    try:
        first.wait_for("regnotify is up")
        env_before = (state_root / ".regnotify" / "up.env").read_text()
        other = [f"--{name}-port={free_port()}" for name in ports]
        second = _up(state_root, *other)
        assert second.returncode == 2, second.stdout + second.stderr
        line = second.stderr.strip()
        assert line == (f"regnotify up: regnotify up is already running in "
                        f"{state_root / '.regnotify'} (pid {first.proc.pid}): use that one, "
                        "stop it first, or pass --state-dir for a second stack")
        assert "Traceback" not in second.stdout + second.stderr
        # The first one's settings are still published, and it still serves.
        assert (state_root / ".regnotify" / "up.env").read_text() == env_before
        assert http_status(f"http://127.0.0.1:{ports['relay']}/healthz") == 200
        assert f":{ports['postgres']}/" in up_env(state_root)["DATABASE_URL"]
        assert first.proc.poll() is None
    finally:
        assert_stopped_cleanly(first, ports, state_root)


def test_port_flags_for_servers_up_does_not_start_are_refused(state_root: Path, database_url):
    result = _up(state_root, f"--postgres-port={free_port()}", DATABASE_URL=database_url)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "regnotify up: --postgres-port is for the postgres that up starts itself, but "
        "DATABASE_URL is set, so up uses that server: drop --postgres-port or unset "
        "DATABASE_URL")
    result = _up(state_root, f"--redis-port={free_port()}",
                 CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 2
    assert "--redis-port is for the redis that up starts itself" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_stale_up_env_is_not_read_by_the_next_up(state_root: Path):
    # Left by an `up` that was killed: its database is gone. The next `up`
    # starts its own instead of attaching to a dead URL.
    folder = state_root / ".regnotify"
    folder.mkdir()
    (folder / "up.env").write_text("DATABASE_URL=postgresql://gone@127.0.0.1:1/gone\n")
    ports = {name: free_port() for name in ("postgres", "redis", "relay", "flower")}
    up = Up(state_root, ports)
    try:
        up.wait_for("regnotify is up")
        assert f":{ports['postgres']}/" in up_env(state_root)["DATABASE_URL"]
    finally:
        assert_stopped_cleanly(up, ports, state_root)
