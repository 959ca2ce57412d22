"""Running `up`'s children in the foreground: prefixed live output, clean shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

_COLOURS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m"]
_RESET = "\033[0m"


@dataclass
class Child:
    """One long-running command, in its own process group."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    drop: Callable[[str], bool] | None = field(default=None, repr=False)


class ChildProcesses:
    """Starts children, copies their output with a name prefix, stops them all together."""

    def __init__(self, out: TextIO = sys.stdout, *, colour: bool | None = None) -> None:
        self._out = out
        self._colour = out.isatty() if colour is None else colour
        self._lock = threading.Lock()
        self._children: list[Child] = []
        self._width = 8
        self._lost = False

    @property
    def output_lost(self) -> bool:
        """Whether the output went away (a pipe whose reader died); lines are dropped since."""
        return self._lost

    def say(self, name: str, line: str) -> None:
        """Print one line under a name, as the children's lines are; never raises.

        The reader of our output (`| tee`, a terminal) may be gone, often
        killed by the same Ctrl-C we are handling: a failed write must not
        cut a shutdown short, so from then on lines are dropped.
        """
        with self._lock:
            if self._lost:
                return
            index = [c.name for c in self._children].index(name) if any(
                c.name == name for c in self._children) else len(_COLOURS) - 1
            prefix = f"{name:<{self._width}} | "
            if self._colour:
                prefix = f"{_COLOURS[index % len(_COLOURS)]}{prefix}{_RESET}"
            try:
                self._out.write(prefix + line.rstrip("\n") + "\n")
                self._out.flush()
            except (OSError, ValueError):
                self._lost = True
                _silence(self._out)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str], *,
              drop: Callable[[str], bool] | None = None) -> Child:
        """Start `argv` with `env`; its stdout and stderr are printed as they come.

        Lines for which `drop(line)` is true are read and not printed.
        """
        child = Child(name, list(argv), dict(env), drop=drop)
        self._children.append(child)
        self._width = max(self._width, len(name))
        child.proc = subprocess.Popen(
            child.argv, env=child.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        threading.Thread(target=self._pump, args=(child,), daemon=True).start()
        return child

    def _pump(self, child: Child) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        for raw in iter(child.proc.stdout.readline, b""):
            line = raw.decode(errors="replace")
            if child.drop is None or not child.drop(line):
                self.say(child.name, line)

    def first_exited(self) -> Child | None:
        """A child that has stopped on its own, if any."""
        for child in self._children:
            if child.proc is not None and child.proc.poll() is not None:
                return child
        return None

    def wait(self, should_stop: Callable[[], bool], poll_s: float = 0.2) -> Child | None:
        """Block until `should_stop()` or a child exits; returns the child that exited."""
        while not should_stop():
            exited = self.first_exited()
            if exited is not None:
                return exited
            time.sleep(poll_s)
        return None

    def pids(self) -> dict[str, int]:
        """name -> pid of every child started (each leads its own process group)."""
        return {c.name: c.proc.pid for c in self._children if c.proc is not None}

    def stop_all(self, timeouts_s: Mapping[str, float] | None = None,
                 default_s: float = 8.0) -> None:
        """Stop the children one by one, in the order they were started.

        SIGTERM to the child's process group, SIGKILL after its bound: the
        worker first (it finishes what it holds while the broker and the
        database are still there), Flower last; one that ignores SIGTERM
        costs its bound, not a hang.
        """
        timeouts_s = timeouts_s or {}
        for child in self._children:
            if child.proc is None:
                continue
            if child.proc.poll() is None:
                _signal_group(child, signal.SIGTERM)
                try:
                    child.proc.wait(timeouts_s.get(child.name, default_s))
                except subprocess.TimeoutExpired:
                    self.say(child.name, "did not stop after SIGTERM in time; killing it")
                    _signal_group(child, signal.SIGKILL)
                    child.proc.wait()
            # Worker pools and the like may outlive their parent: clear the group.
            _signal_group(child, signal.SIGKILL)


def _signal_group(child: Child, sig: signal.Signals) -> None:
    if child.proc is None:
        return
    # The group may already be gone; that is the state we want.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.proc.pid, sig)


def _silence(out: TextIO) -> None:
    """Point a dead stdout at /dev/null, so the interpreter's final flush stays quiet."""
    try:
        fd = out.fileno()
    except (OSError, ValueError):
        return
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
