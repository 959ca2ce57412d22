"""`regnotify retry-failed`: re-drive failed deliveries through the same send tasks.

A failed delivery is put back to `queued` with a fresh attempt budget (in one
transaction), then its `send_sms`/`send_email` task is published, exactly as
the tick does for a new delivery; every guard of the normal send (opt-outs,
contact changes, leases, Resend idempotency) applies again.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tasks.cli.database_url import (
    add_database_url_option,
    database,
    parse_registration_id,
)
from tasks.cli.printing import (
    console,
    describe_error,
    print_json,
    print_rows,
    text,
    when,
)
from tasks.exceptions import CommandError
from tasks.masking import mask_recipient, mask_text

if TYPE_CHECKING:
    from db.queue import DeliveryRef
    from db.status import FailedDelivery

DEFAULT_SINCE = "24h"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """A duration back from now ('30m', '24h', '7d', '2w', '90s') or an ISO 8601 time.

    An ISO time without an offset is read as local time, which is what a
    person typing one at a terminal means.
    """
    now = now or datetime.now(UTC)
    match = _DURATION.match(value)
    if match:
        amount = float(match.group(1))
        if amount <= 0:
            raise CommandError(f"--since must be more than zero: {value!r}")
        try:
            return now - timedelta(seconds=amount * _UNIT_S[match.group(2).lower()])
        except OverflowError:
            raise CommandError(f"--since reaches back too far: {value!r}") from None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CommandError(
            f"--since takes a duration like 30m, 24h, 7d or an ISO time like "
            f"2024-05-01T09:00:00Z, not {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    if moment > now:
        raise CommandError(f"--since is in the future: {value!r}")
    return moment


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser(
        "retry-failed",
        help="re-drive failed deliveries through the send tasks",
        description="Put failed deliveries back to queued and publish their send tasks again.",
    )
    add_database_url_option(p)
    p.add_argument("--since", default=DEFAULT_SINCE, metavar="DURATION_OR_ISO",
                   help="failed at or after this: 30m, 24h, 7d or an ISO time (default: 24h)")
    p.add_argument("--channel", choices=["sms", "email"], help="only this channel")
    p.add_argument("--registration", metavar="REG_ID", help="only this registration")
    p.add_argument("--dry-run", action="store_true", help="list what would be retried, change "
                   "nothing")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Find the failed deliveries, requeue them, publish their tasks, report."""
    # Validate everything before touching the database.
    since = parse_since(args.since)
    registration_id = parse_registration_id(args.registration) if args.registration else None

    from db import deliveries
    from db import status as db_status

    with database(args) as conn:
        if registration_id and db_status.registration(conn, registration_id) is None:
            raise CommandError(f"no registration {registration_id}")
        refs = deliveries.failed(
            conn, since=since, channel=args.channel, registration_id=registration_id
        )
        # Read the errors now: the requeue clears them.
        details = db_status.deliveries_by_id(conn, [r.id for r in refs])
        requeued: list[DeliveryRef] = []
        if not args.dry_run:
            for ref in refs:
                # None: another retry-failed (or a person) got to it first.
                again = deliveries.requeue_failed(conn, ref.id)
                if again is not None:
                    requeued.append(again)
    # Published only after the requeue committed, so a task never finds its
    # delivery still `failed`.
    dispatched = _dispatch(requeued) if requeued else 0

    requeued_ids = {r.id for r in requeued}
    if args.json:
        print_json(_document(args, since, registration_id, details, requeued_ids, dispatched))
    else:
        _print(args, since, details, requeued_ids)
    return 0


def _dispatch(refs: Sequence[DeliveryRef]) -> int:
    from db.connector import family_errors
    from db.errors import BrokerUnavailable
    from tasks.broker.dispatch import dispatch

    try:
        with family_errors(network=BrokerUnavailable):
            return dispatch(refs)
    except BrokerUnavailable as exc:
        # The rows are queued in the database already; the tick's sweep
        # re-publishes queued deliveries nobody is working on.
        raise CommandError(
            f"requeued {len(refs)} deliveries but could not reach the broker ({exc.detail}); "
            "the next tick's sweep will send them",
            exit_code=1,
        ) from None


def _document(
    args: argparse.Namespace,
    since: datetime,
    registration_id: str | None,
    details: Sequence[FailedDelivery],
    requeued_ids: set[int],
    dispatched: int,
) -> dict[str, Any]:
    return {
        "dry_run": bool(args.dry_run),
        "since": since,
        "channel": args.channel,
        "registration_id": registration_id,
        "matched": len(details),
        "requeued": len(requeued_ids),
        "dispatched": dispatched,
        # May have been accepted before: a re-drive may send them twice.
        "may_arrive_twice": [d.id for d in details if d.outcome_unknown],
        "deliveries": [
            {
                **asdict(d),
                "recipient": mask_recipient(d.channel, d.recipient),
                "error_message": mask_text(d.error_message),
                "requeued": d.id in requeued_ids,
            }
            for d in details
        ],
    }


def _print(
    args: argparse.Namespace,
    since: datetime,
    details: Sequence[FailedDelivery],
    requeued_ids: set[int],
) -> None:
    out = console()
    scope = [f"since {when(since)}"]
    if args.channel:
        scope.append(f"channel {args.channel}")
    if args.registration:
        scope.append(f"registration {args.registration}")
    scope_text = ", ".join(scope)
    if not details:
        out.print(text(f"No failed deliveries to retry ({scope_text})."))
        return
    if args.dry_run:
        out.print(text(f"Would retry {_deliveries(len(details))} ({scope_text}); "
                       "dry run, nothing changed:"))
    else:
        moved_on = len(details) - len(requeued_ids)
        note = f"; {moved_on} had already moved on" if moved_on else ""
        out.print(text(f"Retrying {_deliveries(len(requeued_ids))} ({scope_text}){note}:"))
    print_rows(
        out,
        ("id", "registration", "customer", "channel", "to", "last error", "tries",
         "failed at"),
        [(d.id, d.registration_id, d.customer_name, d.channel,
          mask_recipient(d.channel, d.recipient), describe_error(d.error_code, d.error_message),
          d.attempts, when(d.failed_at))
         for d in details],
    )
    unknown = [d.id for d in details if d.outcome_unknown
               and (args.dry_run or d.id in requeued_ids)]
    if unknown:
        out.print(text(f"Warning: {len(unknown)} of these may have been accepted already "
                       f"(the provider's answer was lost: {', '.join(map(str, unknown))}); "
                       "sent again, they may arrive twice."))
    if requeued_ids:
        out.print("Their send tasks are published: follow them with `regnotify status REG_ID` "
                  "or in Flower.", markup=False)


def _deliveries(n: int) -> str:
    return f"{n} failed delivery" if n == 1 else f"{n} failed deliveries"
