"""Linux network namespaces as hosts: make them, run in them, cut them off, remove them.

Every namespace this module makes is named `<prefix><pid>x<tag>-<role>`, so a
run knows its own, parallel runs never collide, and a later run can sweep
what a killed run left behind (its pid is dead). The hosts are joined by veth
pairs on a bridge that lives inside a "switch" namespace of the run: the
root namespace's links, routes and firewall are never touched, and only
addresses inside namespaces made here are ever used.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

#: Every namespace name made by this harness starts with this.
PREFIX = "rncl"
NETNS_DIR = Path("/var/run/netns")
_CLONE_NEWNET = 0x40000000
_NAME = re.compile(rf"^{PREFIX}(\d+)x")

T = TypeVar("T")


class NamespaceError(RuntimeError):
    """An `ip` command failed; the message says which and why."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS`; NamespaceError with its stderr when it fails and `check`."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NamespaceError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def usable() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "the cluster tests make network namespaces: run them as root"
    try:
        probe = f"{PREFIX}{os.getpid()}xprobe"
        ip("netns", "add", probe)
        ip("netns", "del", probe)
    except (OSError, NamespaceError) as exc:
        return f"cannot make a network namespace here: {exc}"
    return None


def pids_in(name: str) -> list[int]:
    """The pids of every process whose network namespace is `name`."""
    out = ip("netns", "pids", name, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def kill_all_in(name: str) -> int:
    """SIGKILL every process in namespace `name` (a host pulled from the wall); how many."""
    killed = 0
    for pid in pids_in(name):
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    return killed


def delete(name: str) -> None:
    """Kill what runs in `name` and remove it (its veth ends go with it)."""
    kill_all_in(name)
    ip("netns", "del", name, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Remove namespaces with our prefix whose run (the pid in the name) is gone."""
    removed = []
    names = ip("netns", "list", check=False).stdout.split("\n")
    for line in names:
        name = line.split(" ")[0].strip()
        match = _NAME.match(name)
        if match and not _alive(int(match.group(1))):
            delete(name)
            removed.append(name)
    return removed


_libc = ctypes.CDLL(None, use_errno=True)


def run_in(name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call `fn` in a thread that has joined namespace `name`, and return its result.

    setns() on a network namespace is allowed in a threaded process and
    applies to the calling thread only: sockets `fn` opens live in `name`
    and keep working from any thread afterwards (a psycopg connection, say).
    """
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            fd = os.open(NETNS_DIR / name, os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise NamespaceError(f"setns({name}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=body, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def popen_in(name: str, argv: Sequence[str], *, env: Mapping[str, str], log: Path,
             user: str | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` inside namespace `name` (as `user` when given), output to `log`."""
    prefix = ["ip", "netns", "exec", name]
    if user:
        prefix += ["runuser", "-u", user, "--"]
    with log.open("ab") as out:
        return subprocess.Popen([*prefix, *argv], env=dict(env), stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
