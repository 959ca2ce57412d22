"""Subcommands of `regnotify`, in the order `--help` lists them."""

from __future__ import annotations

from tasks.commands import migrate

COMMANDS = [migrate]
