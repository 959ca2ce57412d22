"""`regnotify migrate [--status]`: apply pending migrations or list their state."""

from __future__ import annotations

import argparse

from db.connection import redacted
from db.migrations import migrate, status
from tasks.commands.database_url import add_database_url_option, resolve_database_url
from tasks.exceptions import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("migrate", help="apply pending SQL migrations")
    add_database_url_option(p)
    p.add_argument("--status", action="store_true", help="list applied and pending migrations")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Apply, or with --status list, the migrations."""
    url = resolve_database_url(args)
    if args.status:
        return _print_status(url)
    applied = migrate(url, on_applied=_report)  # a MigrationError is said by tasks/cli.py
    if applied:
        print(f"applied {len(applied)} migration(s) to {redacted(url)}")
    else:
        print(f"nothing to apply: {redacted(url)} is up to date")
    return 0


def _report(filename: str, notices: list[str]) -> None:
    print(f"  applied {filename}")
    for notice in notices:
        print(f"    note: {notice}")


def _print_status(url: str) -> int:
    states = status(url)
    width = max((len(s.filename) for s in states), default=10)
    for s in states:
        when = f"{s.applied_at:%Y-%m-%d %H:%M:%S}" if s.applied_at else ""
        print(f"{s.filename:<{width}}  {s.status:<8}  {when}")
    pending = sum(s.status == "pending" for s in states)
    bad = [s.filename for s in states if s.status in ("edited", "missing")]
    print(f"{len(states) - pending} applied, {pending} pending")
    if bad:
        raise CommandError(f"edited or missing after apply: {', '.join(bad)}")
    return 0
