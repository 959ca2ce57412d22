"""A real Celery worker in a child process, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from celery import Celery


class WorkerProcess:
    """Runs `argv` (a worker command) with `env`, logging to `log_path`."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.argv = list(argv)
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, app: Celery, timeout: float = 30.0) -> None:
        """Start and wait until the worker answers a ping."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[1], start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            # limit=1: back on the first pong rather than after the whole
            # timeout (a ping otherwise waits it out for more workers).
            if app.control.ping(timeout=0.5, limit=1):
                return
        raise RuntimeError(f"worker did not answer a ping:\n{self.log()}")

    def log(self) -> str:
        """The worker's output so far (the tail)."""
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self, timeout: float = 15.0) -> None:
        """Warm shutdown (SIGTERM to the process group), then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """kill -9 of the whole process group (pool included)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def regnotify_worker_argv(concurrency: int = 4) -> list[str]:
    """`regnotify worker` in this interpreter's environment."""
    return [sys.executable, "-m", "tasks.cli", "worker", "-c", str(concurrency), "-l", "info"]


def celery_worker_argv(concurrency: int = 4) -> list[str]:
    """`celery -A tasks worker`, as the README documents it."""
    return [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-c", str(concurrency),
            "-l", "info"]
