"""`regnotify prune [--dry-run]`: delete what has outlived its retention age.

Processed queue rows, webhook events and our pg_cron jobs' run history go
after the ages in notification_config (retain_processed_queue,
retain_webhook_events, retain_cron_history); the delivery history
(registration_notifications) only when retain_deliveries is set. pg_cron
does this every five minutes where it runs, and the relay hourly where it
does not: this command is for doing it now, or seeing what would go.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tasks.cli.database_url import add_database_url_option, use_database_url
from tasks.exceptions import CommandError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from db.prune import Candidates

#: What each kind is, for people.
KIND_NAMES = {
    "processed_queue": "processed queue rows",
    "webhook_events": "webhook events",
    "cron_history": "pg_cron run history (our jobs)",
    "deliveries": "delivery history",
    "replies": "customers' replies (inbound texts) and their e-mails to staff",
}

#: Which notification_config column holds each kind's age.
AGE_COLUMNS = {
    "processed_queue": "retain_processed_queue",
    "webhook_events": "retain_webhook_events",
    "cron_history": "retain_cron_history",
    "deliveries": "retain_deliveries",
    # Replies follow the delivery history they answer.
    "replies": "retain_deliveries",
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser(
        "prune",
        help="delete processed queue rows, webhook events and cron history past their age",
        description="Delete what has outlived its age in notification_config, in small "
                    "batches (each its own transaction).",
    )
    add_database_url_option(p)
    p.add_argument("--dry-run", action="store_true",
                   help="say what would go (rows per kind, and their ages); delete nothing")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="rows of each kind per transaction (default: 5000)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=run)


def age(value: timedelta | None) -> str:
    """'30 days', '12 hours', or 'kept forever' for no age."""
    if value is None:
        return "kept forever"
    seconds = int(value.total_seconds())
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day" if days == 1 else f"{days} days"
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour" if hours == 1 else f"{hours} hours"
    return f"{seconds} s"


def run(args: argparse.Namespace) -> int:
    """Preview, or prune in batches and report."""
    from db.prune import DEFAULT_BATCH

    batch_size = DEFAULT_BATCH if args.batch_size is None else args.batch_size
    if not 1 <= batch_size <= 100_000:
        raise CommandError(f"--batch-size must be between 1 and 100000, not {batch_size}")
    with _engine(args) as engine:
        if args.dry_run:
            return _dry_run(args, engine)
        return _prune(args, engine, batch_size)


@contextmanager
def _engine(args: argparse.Namespace) -> Iterator[Engine]:
    """The configured database; unreachable or never migrated is a one-line error."""
    from db.connection import redacted
    from db.connector import family_errors
    from db.errors import CallerNotAllowed, DatabaseNotMigrated
    from tasks.database import engine

    url = use_database_url(args)
    try:
        with family_errors(database_url=url):
            yield engine()
    except DatabaseNotMigrated:
        raise CommandError(f"database {redacted(url)} has no retention functions yet: "
                           "run `regnotify migrate`") from None
    except CallerNotAllowed:
        raise CommandError(f"the role in {redacted(url)} may not prune: connect as the "
                           "database owner (the role that ran the migrations)") from None


def _dry_run(args: argparse.Namespace, engine: Engine) -> int:
    from db.prune import preview

    with engine.begin() as conn:
        found = preview(conn)
    if args.json:
        print(json.dumps({"dry_run": True, "kinds": [_candidate_json(c) for c in found]},
                         indent=2))
        return 0
    total = sum(c.rows for c in found)
    print(f"Dry run: {total} row(s) would be deleted; nothing changed.")
    for c in found:
        print("  " + _candidate_line(c))
    return 0


def _candidate_line(c: Candidates) -> str:
    name = KIND_NAMES.get(c.kind, c.kind)
    if c.older_than is None:
        return f"{name}: kept forever (set notification_config.{AGE_COLUMNS[c.kind]} to prune)"
    oldest = f", oldest {c.oldest:%Y-%m-%d %H:%M}" if c.oldest else ""
    return f"{name}: {c.rows} older than {age(c.older_than)}{oldest}"


def _candidate_json(c: Candidates) -> dict[str, Any]:
    return {
        "kind": c.kind,
        "older_than_s": None if c.older_than is None else c.older_than.total_seconds(),
        "rows": c.rows,
        "oldest": c.oldest.isoformat() if c.oldest else None,
    }


def _prune(args: argparse.Namespace, engine: Engine, batch_size: int) -> int:
    from db.prune import prune

    began = time.monotonic()

    def progress(n: int, deleted: dict[str, int]) -> None:
        if args.json or not any(deleted.values()):
            return
        went = ", ".join(f"{KIND_NAMES.get(k, k)} {v}" for k, v in deleted.items() if v)
        print(f"  batch {n}: {went}", flush=True)

    result = prune(engine, batch_size=batch_size, on_batch=progress)
    seconds = time.monotonic() - began
    if args.json:
        print(json.dumps({"dry_run": False, "deleted": result.deleted,
                          "batches": result.batches, "seconds": round(seconds, 3)}, indent=2))
        return 0
    if not result.total:
        print("Nothing to prune.")
        return 0
    print(f"Pruned {result.total} row(s) in {result.batches} batch(es), {seconds:.1f}s:")
    for kind, n in result.deleted.items():
        if n:
            print(f"  {KIND_NAMES.get(kind, kind)}: {n}")
    return 0
