"""Subcommands of `regnotify`, one module each, in the order `--help` lists them.

Shared by several: `database_url` (the database and registration a command
works on), `printing` (tables, JSON, times) and `timeline` (`status REG_ID`).
"""

from __future__ import annotations

from tasks.cli import (
    bench,
    demo,
    migrate,
    opt_out,
    prune,
    relay,
    retry_failed,
    send,
    staff,
    status,
    tick,
    uninstall,
    up,
    worker,
)

COMMANDS = [up, demo, migrate, worker, relay, tick, send, status, retry_failed, opt_out, prune,
            staff, bench, uninstall]
