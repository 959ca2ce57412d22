"""What an `up` that did not stop cleanly left running, found again and stopped by the next one.

`up` writes the pids of the processes it starts (worker, relay, Flower,
Redis) to `up.pids` in its state folder and removes the file once they are
stopped. The folder's lock is an flock, so a killed `up` frees it at once;
the file stays and tells the next `up` what may still be running. A pid is
only trusted with the start time it had, so a reused pid is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PIDS_FILE = "up.pids"


@dataclass(frozen=True)
class Leftover:
    """A process an earlier `up` started and that still runs."""

    name: str
    pid: int

    def how_to_stop(self) -> str:
        """The command a person runs when we could not stop it."""
        return f"kill -9 -{self.pid}"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after its ')' are plain.
    return stat.rsplit(")", 1)[1].split()[19]


def record(root: Path, pids: dict[str, int]) -> None:
    """Remember the processes this `up` started (replacing what was there)."""
    entries = {name: {"pid": pid, "started": _start_time(pid)} for name, pid in pids.items()}
    path = root / PIDS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries))
    tmp.replace(path)


def forget(root: Path) -> None:
    """Everything recorded is stopped."""
    (root / PIDS_FILE).unlink(missing_ok=True)


def find(root: Path) -> list[Leftover]:
    """The recorded processes that still run (same pid, same start time)."""
    try:
        entries = json.loads((root / PIDS_FILE).read_text())
    except (OSError, ValueError):
        return []
    found = []
    for name, entry in entries.items():
        pid, started = entry.get("pid"), entry.get("started")
        if isinstance(pid, int) and started is not None and _start_time(pid) == started:
            found.append(Leftover(name, pid))
    return found


def stop(leftovers: list[Leftover], timeout_s: float = 10.0) -> list[Leftover]:
    """SIGTERM each one's process group, SIGKILL after `timeout_s`; those still running."""
    for item in leftovers:
        _signal(item.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(i) for i in leftovers):
        time.sleep(0.1)
    for item in leftovers:
        if _alive(item):
            _signal(item.pid, signal.SIGKILL)
    time.sleep(0.2)
    return [i for i in leftovers if _alive(i)]


def _alive(item: Leftover) -> bool:
    # A zombie (exited, not yet reaped by its parent) is stopped for our purposes.
    try:
        state = Path(f"/proc/{item.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal(pid: int, sig: signal.Signals) -> None:
    # Each was started as the leader of its own session and group; the group
    # takes worker pools and the like along. A group already gone is fine.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
