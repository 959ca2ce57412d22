"""Subcommands of `regnotify`, in the order `--help` lists them."""

from __future__ import annotations

from tasks.commands import (
    bench,
    demo,
    migrate,
    prune,
    relay,
    retry_failed,
    send,
    status,
    tick,
    up,
    worker,
)

COMMANDS = [up, demo, migrate, worker, relay, tick, send, status, retry_failed, prune, bench]
