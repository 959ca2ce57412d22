"""A private PostgreSQL cluster from the system's server binaries.

Used by `regnotify up` (state kept in a folder across restarts) and by the
test suite (a throwaway cluster). initdb refuses to run as root, so when we
are root the server runs as the unprivileged `postgres` user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg


class EmbeddedPostgresError(RuntimeError):
    """The private cluster could not be created or started."""


def find_bindir() -> Path | None:
    """The newest PostgreSQL server bindir on this machine (15+), or None."""
    override = os.environ.get("REGNOTIFY_PG_BINDIR")
    if override:
        return Path(override)
    candidates = []
    for root in (Path("/usr/lib/postgresql"), Path("/usr/local/pgsql")):
        if root.is_dir():
            for child in root.iterdir():
                if (child / "bin" / "initdb").exists() and child.name.isdigit():
                    candidates.append((int(child.name), child / "bin"))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append((0, Path(on_path).parent))
    candidates.sort(reverse=True)
    return candidates[0][1] if candidates else None


def pg_cron_available(bindir: Path) -> bool:
    """Whether the pg_cron extension is installed for these binaries."""
    version_dir = bindir.parent
    share = Path("/usr/share/postgresql") / version_dir.name / "extension" / "pg_cron.control"
    if share.exists():
        return True
    try:
        sharedir = subprocess.run(
            [str(bindir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return False
    return (Path(sharedir) / "extension" / "pg_cron.control").exists()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on host:port."""
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


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
        self.bindir = self.bindir or find_bindir()
        if self.bindir is None:
            raise EmbeddedPostgresError(
                "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin "
                "and PATH); install postgresql-15 or set DATABASE_URL"
            )
        self.cron = self.cron and pg_cron_available(self.bindir)
        self._owner = self._run_as()

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

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict = {"capture_output": True, "text": True, "check": False}
        if self._owner is not None:
            kwargs["user"] = self._owner.pw_uid
            kwargs["group"] = self._owner.pw_gid
            kwargs["extra_groups"] = []
            kwargs["cwd"] = "/"
        result = subprocess.run(list(args), **kwargs)
        if check and result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

    def _chown(self, path: Path) -> None:
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
        self._chown(self.data_dir)
        assert self.bindir is not None
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
            "-A", "trust", "-E", "UTF8", "--no-instructions",
        )

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
        if not self.running():
            if port_in_use(self.port):
                raise EmbeddedPostgresError(
                    f"port {self.port} on 127.0.0.1 is already in use; "
                    "stop what listens there or choose another port"
                )
            if not self.log_file.exists():
                self.log_file.touch()
            self._chown(self.log_file)
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
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                last = exc
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
