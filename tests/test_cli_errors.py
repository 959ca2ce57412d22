"""Every command meets a bad DATABASE_URL or an unmigrated database with one line and exit 2.

The real console script in a subprocess, against a real throwaway database:
the traceback this replaces came from the process, not from a function.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import connect

REG = "00000000-0000-0000-0000-000000000000"
#: The console script pip installed beside this interpreter.
REGNOTIFY = Path(sys.executable).parent / "regnotify"

#: Every command that uses the database (bench runs a private stack of its own).
COMMANDS = {
    "status": ["status"],
    "status REG": ["status", REG],
    "send": ["send", REG],
    "retry-failed": ["retry-failed"],
    "opt-out": ["opt-out", "+15551230001"],
    "prune": ["prune"],
    "prune --dry-run": ["prune", "--dry-run"],
    "tick": ["tick"],
    "tick --inline": ["tick", "--inline"],
    "worker": ["worker"],
    "relay": ["relay", "--local-only", "--port", "1"],
    "demo": ["demo"],
    "migrate": ["migrate"],
    "migrate --status": ["migrate", "--status"],
    "up": ["up"],
}
#: migrate and up migrate the database themselves: an unmigrated one is fine for them.
MIGRATING = {"migrate", "migrate --status", "up"}


def _run(argv: list[str], database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "RELAY_"))}
    env["DATABASE_URL"] = database_url
    # Refused before any port is bound or any server started.
    env["CELERY_BROKER_URL"] = "redis://127.0.0.1:1/0"
    assert REGNOTIFY.exists(), "install the project (scripts/setup) for its console script"
    return subprocess.run([str(REGNOTIFY), *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def workdir() -> Iterator[Path]:
    """An empty folder, so no .env or .regnotify/up.env is picked up."""
    with tempfile.TemporaryDirectory(prefix="regnotify-cli-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def unmigrated_url(database_url: str) -> Iterator[str]:
    """A reachable database on the test cluster that `regnotify migrate` never saw."""
    name = f"unmigrated_{uuid.uuid4().hex[:8]}"
    with connect(database_url) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base, _, _ = database_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with connect(database_url) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _assert_one_line(result: subprocess.CompletedProcess[str], command: str, fix: str) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"regnotify {command.split()[0]}: "), lines
    assert fix in lines[0], lines
    assert result.returncode == 2, result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_a_url_that_is_not_a_url(command, workdir):
    result = _run(COMMANDS[command], "bogus", workdir)
    _assert_one_line(result, command, "set it to postgresql://")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_mysql_url(command, workdir):
    result = _run(COMMANDS[command], "mysql://app:secret@127.0.0.1:3306/app", workdir)
    _assert_one_line(result, command, "regnotify needs PostgreSQL")
    assert "MySQLdb" not in result.stderr and "secret" not in result.stderr


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - MIGRATING))
def test_a_database_never_migrated(command, workdir, unmigrated_url):
    result = _run(COMMANDS[command], unmigrated_url, workdir)
    _assert_one_line(result, command, "run `regnotify migrate`")


def test_bench_from_an_installed_package_says_how_to_run_it(workdir):
    # As installed from the wheel: no bench package to import.
    code = ("import sys; sys.modules['bench'] = None; from tasks.cli.main import main; "
            "sys.exit(main(['bench', '--smoke']))")
    result = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True,
                            text=True, timeout=60)
    _assert_one_line(result, "bench", "runs from a source checkout")
    assert "scripts/setup" in result.stderr
