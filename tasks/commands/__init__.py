"""Subcommands of `regnotify`, in the order `--help` lists them."""

from __future__ import annotations

from tasks.commands import migrate, send, tick, worker

COMMANDS = [migrate, worker, tick, send]
