"""Whether a `regnotify up` runs in this folder: for commands that found no database or broker.

Other commands find up's database and broker through `.regnotify/up.env`,
which exists only while an `up` runs in the folder they are started from.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tasks.settings import UP_ENV_FILE


def up_running_here(folder: Path | None = None) -> int | None:
    """The pid of the `up` holding this folder's state lock, or None when none does."""
    lock_file = (folder or Path.cwd()) / Path(UP_ENV_FILE).parent / "up.lock"
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def where_up_runs(setting: str, flag: str | None = None) -> str:
    """The sentence after "no database:" / "no broker:", saying where `up`'s settings come from."""
    here = Path.cwd()
    pid = up_running_here(here)
    own = f"set {setting}" + (f" or pass {flag}" if flag else "")
    if pid is None:
        return (f"no `regnotify up` runs in {here}; commands find up's {setting} in "
                f"{UP_ENV_FILE} of the folder where up runs: run this there, start "
                f"`regnotify up` here, or {own}")
    return (f"a `regnotify up` (pid {pid}) holds {here / Path(UP_ENV_FILE).parent} but has "
            f"not written {UP_ENV_FILE} yet (still starting?): wait for \"regnotify is up\", "
            f"or {own}")
