"""`regnotify uninstall [--yes] [--drop-data]`: take regnotify out of a database.

Everything regnotify created goes: its tables, the columns it added to
tables it did not create, its trigger, functions, policies and grants, the
roles it created (where no other database uses them), its pg_cron jobs, the
Vault secret `regnotify_relay_token`, and the ledger schema `regnotify`.
What was there before (adopted: the seed's own `registrations` and
`registration_notifications`, with their rows, columns, policies and
grants) stays as it was. One transaction: all of it, or nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from db.connection import redacted
from db.install.undo import UndoReport, summarize, uninstall, uninstall_plan
from tasks.cli.database_url import add_database_url_option, resolve_database_url
from tasks.exceptions import CommandError

#: How each kind of key is said.
_KINDS = {
    "rel": "tables, views, indexes and sequences", "col": "columns", "fn": "functions",
    "pol": "policies", "trg": "triggers", "con": "constraints", "role": "roles",
    "schema": "schemas", "type": "types", "ext": "extensions", "cron": "pg_cron jobs",
    "member": "role memberships",
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser(
        "uninstall",
        help="remove everything regnotify created, keeping what was there before",
        description="Remove every regnotify migration and what it created, in one "
                    "transaction; tables and rows that existed before regnotify stay.",
    )
    add_database_url_option(p)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--drop-data", action="store_true",
                   help="accept deleting regnotify's own data (queue, delivery columns, ...)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Say what will go, ask, remove it, and say what went."""
    url = resolve_database_url(args)
    undos, made, adopted = uninstall_plan(url)
    if not undos:
        print(f"nothing to uninstall: no regnotify migration is applied to {redacted(url)}")
        return 0
    losing = [f"  {u.migration.removesuffix('.sql')}: {u.drops}" for u in undos if u.drops]
    print(f"regnotify uninstall will undo {len(undos)} migration(s) on {redacted(url)}.")
    made = summarize(made)
    if made:
        print(f"It removes {len(made)} object(s) regnotify created:")
        print(_grouped(made))
    if adopted:
        print("It keeps, as they were before regnotify (rows included): "
              + ", ".join(k.split("|", 1)[1] for k in adopted))
    if losing:
        print("Data that goes with it:")
        print("\n".join(losing))
        if not args.drop_data:
            raise CommandError("nothing was removed: run it again with --drop-data to "
                               "accept deleting that data")
    if not args.yes and not _confirmed():
        raise CommandError("nothing was removed (not confirmed; --yes skips the question)")
    report = uninstall(url, drop_data=args.drop_data)
    _print_report(report)
    return 0


def _confirmed() -> bool:
    if not sys.stdin.isatty():
        raise CommandError("refusing to uninstall without a terminal to ask on: add --yes")
    answer = input("Type 'uninstall' to go ahead: ")
    return answer.strip() == "uninstall"


def _grouped(keys: list[str]) -> str:
    groups: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        kind, name = key.split("|", 1)
        if kind.endswith("acl") or kind == "rls":
            continue
        groups[kind].append(name)
    return "\n".join(f"  {_KINDS.get(kind, kind)}: {', '.join(names)}"
                     for kind, names in sorted(groups.items()))


def _print_report(report: UndoReport) -> None:
    print(f"undid {len(report.undone)} migration(s), newest first")
    removed = summarize(sorted(set(report.removed)))
    if removed:
        print("removed:")
        print(_grouped(removed))
    if report.restored:
        print("put back as it was before regnotify: "
              + ", ".join(k.replace("|", " ", 1) for k in sorted(set(report.restored))))
    for line in report.kept:
        print(f"kept: {line}")
    for line in report.notes:
        print(line)
