"""What a first-time user meets next: commands that know where they are, checked flags,
placeholders refused, and output that says only what applies. The real console script
in a subprocess, in a folder of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.flow import change_stage
from tests.pg import connect, new_registration

REPO = Path(__file__).resolve().parents[1]
REGNOTIFY = Path(sys.executable).parent / "regnotify"
#: What could point a command at a stack: none of it may leak in from the test's environment.
STACK = ("DATABASE_URL", "CELERY_BROKER_URL", "RELAY_TOKEN", "FLOWER_BASIC_AUTH", "COLUMNS")


def run(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in STACK}
    return subprocess.run([str(REGNOTIFY), *argv], cwd=cwd, env={**base, **env},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def broker(redis_server) -> Iterator[str]:
    """The test Redis, emptied after: what these commands enqueue is for no worker."""
    from tests.relay_helpers import flush_broker

    yield redis_server.url
    flush_broker(redis_server.url)


@pytest.fixture()
def folder() -> Iterator[Path]:
    """An empty folder: no .env, no .regnotify."""
    with tempfile.TemporaryDirectory(prefix="regnotify-first-") as path:
        yield Path(path)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert result.returncode == 2, result
    return lines[0]


# ── Commands that know where they are ────────────────────────────────────────


def test_tick_without_a_broker_refuses_and_says_where_up_runs(folder):
    line = one_line(run(["tick"], folder))
    assert line.startswith("regnotify tick: no broker: no `regnotify up` runs in "
                           f"{folder}"), line
    assert ".regnotify/up.env" in line and "CELERY_BROKER_URL" in line


def test_tick_names_the_broker_it_published_to(folder, broker):
    result = run(["tick"], folder, CELERY_BROKER_URL=broker)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"on {broker}"), result.stdout


def test_tick_hides_the_broker_password():
    from tasks.cli.tick import hide_password

    assert hide_password("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert hide_password("redis://u:s3cret@host/0") == "redis://u:***@host/0"
    assert hide_password("redis://host:6379/0") == "redis://host:6379/0"


def test_no_database_says_whether_an_up_runs_here(folder):
    line = one_line(run(["status"], folder))
    assert line == (
        f"regnotify status: no database: no `regnotify up` runs in {folder}; commands find "
        "up's DATABASE_URL in .regnotify/up.env of the folder where up runs: run this there, "
        "start `regnotify up` here, or set DATABASE_URL or pass --database-url")


def test_no_database_while_an_up_holds_the_folder_but_has_not_published(folder):
    from tasks.local.up_state import UpState

    # Another process holds the lock, as a starting `up` does.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from tasks.local.up_state import UpState; UpState(Path(sys.argv[1])).lock(); "
         "print('locked', flush=True); time.sleep(60)", str(folder / ".regnotify")],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        line = one_line(run(["status"], folder))
        assert f"a `regnotify up` (pid {holder.pid}) holds {folder / '.regnotify'}" in line
        assert "still starting?" in line
    finally:
        holder.kill()
        holder.wait()
    assert UpState  # imported for the child's sake: the same class


def test_a_database_without_tables_is_named_in_full(folder, pg_cluster):
    # The maintenance database: reachable, never migrated, and easy to reach by mistake.
    line = one_line(run(["status"], folder, DATABASE_URL=pg_cluster.admin_url))
    assert (f'database "postgres" on 127.0.0.1:{pg_cluster.port} as user "postgres" has no '
            "regnotify tables") in line
    assert "run `regnotify migrate`" in line and "check DATABASE_URL" in line


# ── Flags and placeholders ───────────────────────────────────────────────────


@pytest.mark.parametrize("value", ["99999", "-5", "0", "65536", "eighty"])
@pytest.mark.parametrize("flag", ["--relay-port", "--flower-port", "--postgres-port",
                                  "--redis-port"])
def test_up_refuses_a_port_that_is_not_one(flag, value, folder):
    result = run(["up", f"{flag}={value}"], folder)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "OverflowError" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"regnotify up: error: argument {flag}: "), last
    assert "1-65535" in last or "not a port number" in last


@pytest.mark.parametrize("name", ["RELAY_TOKEN", "FLOWER_BASIC_AUTH"])
def test_a_copied_env_example_is_refused_until_its_placeholders_are_replaced(name, folder):
    shutil.copy(REPO / ".env.example", folder / ".env")
    line = one_line(run(["up"], folder))
    assert line.startswith("regnotify up: RELAY_TOKEN is still the change-me placeholder"), line
    # Fix the first one: the next placeholder is named the same way.
    text = (folder / ".env").read_text().replace("change-me-relay-token", uuid.uuid4().hex)
    (folder / ".env").write_text(text)
    line = one_line(run(["up"], folder))
    assert line.startswith("regnotify up: FLOWER_BASIC_AUTH is still the change-me "), line
    assert name in ("RELAY_TOKEN", "FLOWER_BASIC_AUTH")


def test_the_relay_refuses_the_placeholder_token(folder, clean_db):
    line = one_line(run(["relay", "--port", "1"], folder, RELAY_TOKEN="change-me-relay-token",
                        DATABASE_URL=clean_db))
    assert "RELAY_TOKEN is still the change-me placeholder" in line


# ── What a person reads ──────────────────────────────────────────────────────


def _quiet_hours(conn, around_now: bool) -> None:
    now = datetime.now(UTC)
    start = now - timedelta(hours=1) if around_now else now + timedelta(hours=2)
    end = now + timedelta(hours=1) if around_now else now + timedelta(hours=3)
    conn.execute("UPDATE notification_config SET quiet_hours_channels = '{sms}', "
                 "default_time_zone = 'UTC', quiet_hours_start = %s, quiet_hours_end = %s",
                 (start.time().replace(microsecond=0), end.time().replace(microsecond=0)))


@pytest.mark.parametrize("quiet_now", [True, False])
def test_send_mentions_quiet_hours_only_inside_them(quiet_now, folder, conn, clean_db, broker):
    from tests.conftest import QUIET_HOURS_OFF

    reg = new_registration(conn, notification_pref="sms")
    _quiet_hours(conn, around_now=quiet_now)
    try:
        result = run(["send", reg], folder, DATABASE_URL=clean_db,
                     CELERY_BROKER_URL=broker)
    finally:
        conn.execute(QUIET_HOURS_OFF)
    assert result.returncode == 0, result.stderr
    said = "inside the customer's quiet hours: the text waits until" in result.stdout
    assert said is quiet_now, result.stdout


def test_status_masks_the_email_like_the_phone_and_names_a_manual_send(folder, conn, clean_db,
                                                                      broker):
    reg = new_registration(conn, customer_email="dana.driver@example.com",
                           customer_phone="+15551234567")
    change_stage(conn, reg, "documents_collected")
    conn.execute("DELETE FROM notification_queue WHERE registration_id = %s", (reg,))
    result = run(["send", reg], folder, DATABASE_URL=clean_db,
                 CELERY_BROKER_URL=broker)
    assert result.returncode == 0, result.stderr
    status = run(["status", reg], folder, DATABASE_URL=clean_db)
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert "dana.driver@example.com" not in out
    assert "d**********@example.com" in out and "+*******4567" in out
    assert "manual send: documents_collected" in out
    assert "· ->" not in out


def test_tables_piped_to_a_file_do_not_wrap_at_80_columns(folder, conn, clean_db, broker):
    reg = new_registration(conn, notification_pref="email",
                           customer_email="a.rather.long.address.for.a.wide.table@example.com")
    change_stage(conn, reg, "documents_collected")
    conn.execute("UPDATE notification_queue SET send_after = now() WHERE registration_id = %s",
                 (reg,))
    # Claimed here: the delivery rows exist (queued), which is all the table needs.
    inline = run(["tick", "--inline"], folder, DATABASE_URL=clean_db, CELERY_BROKER_URL=broker)
    assert inline.returncode == 0, inline.stderr
    with (folder / "status.txt").open("w") as out:
        subprocess.run([str(REGNOTIFY), "status", reg], cwd=folder, stdout=out, check=True,
                       env={**{k: v for k, v in os.environ.items() if k not in STACK},
                            "DATABASE_URL": clean_db}, timeout=60)
    text = (folder / "status.txt").read_text()
    header = [line for line in text.splitlines() if "channel" in line and "message id" in line]
    assert header, text  # one header line: a table, not 80-column blocks
    assert max(len(line) for line in text.splitlines()) > 80


def test_a_new_cluster_starts_without_a_fatal_in_its_log():
    from tasks.local.embedded_postgres import EmbeddedPostgres, free_port

    root = Path(tempfile.mkdtemp(prefix="regnotify-first-pg-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(data_dir=root / "data", port=free_port())
    pg.chown(root)
    try:
        pg.start()
        with connect(pg.url) as conn:  # the database is there
            assert conn.execute("SELECT current_database() AS d").fetchone()["d"] == "regnotify"
        if pg.cron:
            deadline = datetime.now(UTC) + timedelta(seconds=10)
            while "pg_cron scheduler started" not in pg.log_file.read_text():
                assert datetime.now(UTC) < deadline, pg.log_file.read_text()
        log = pg.log_file.read_text()
    finally:
        pg.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
    assert "FATAL" not in log, log
