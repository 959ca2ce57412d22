"""Subcommands of `regnotify`, in the order `--help` lists them."""

from __future__ import annotations

from tasks.commands import (
    bench,
    demo,
    migrate,
    opt_out,
    relay,
    retry_failed,
    send,
    status,
    tick,
    up,
    worker,
)

COMMANDS = [up, demo, migrate, worker, relay, tick, send, status, retry_failed, opt_out, bench]
