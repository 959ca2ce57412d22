"""`regnotify migrate [--status] [--to NN [--drop-data]]`: apply, list, or step back.

`--to NN` takes the database back to just after migration NN, running each
later file's undo (sql/migrations/down/) newest first, each in its own
transaction; an undo that deletes data runs only with --drop-data, and
without it nothing runs and the command says what would go.
"""

from __future__ import annotations

import argparse

from db.connection import redacted
from db.install.migrations import migrate, status
from db.install.undo import rollback
from tasks.cli.database_url import add_database_url_option, resolve_database_url
from tasks.exceptions import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("migrate", help="apply pending SQL migrations")
    add_database_url_option(p)
    p.add_argument("--status", action="store_true", help="list applied and pending migrations")
    p.add_argument("--to", type=_migration_number, metavar="NN",
                   help="roll back to just after migration NN (00: before the first)")
    p.add_argument("--drop-data", action="store_true",
                   help="with --to: let undos that delete data run (they say what)")
    p.set_defaults(handler=run)


def _migration_number(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a migration number: give NN, as in 14 for 14_*.sql")
    return int(value)


def run(args: argparse.Namespace) -> int:
    """Apply, or with --status list, the migrations."""
    url = resolve_database_url(args)
    if args.status:
        return _print_status(url)
    if args.to is not None:
        return _roll_back(url, args.to, args.drop_data)
    if args.drop_data:
        raise CommandError("--drop-data goes with --to NN (or with regnotify uninstall)")
    applied = migrate(url, on_applied=_report)  # a MigrationError is said by tasks/cli/main.py
    if applied:
        print(f"applied {len(applied)} migration(s) to {redacted(url)}")
    else:
        print(f"nothing to apply: {redacted(url)} is up to date")
    return 0


def _roll_back(url: str, to: int, drop_data: bool) -> int:
    report = rollback(url, to, drop_data=drop_data, on_undone=_report_undone)
    if report.undone:
        print(f"rolled back {len(report.undone)} migration(s) of {redacted(url)}: "
              f"it is now just after {to:02d}")
    else:
        print(f"nothing to roll back: {redacted(url)} has nothing after {to:02d}")
    return 0


def _report_undone(filename: str, notes: list[str]) -> None:
    print(f"  undid {filename}")
    for note in notes:
        print(f"    note: {note}")


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
