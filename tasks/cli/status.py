"""`regnotify status [REG_ID]`: the pipeline at a glance, or one registration's timeline.

Without REG_ID: queue depth, rows due now and how long the oldest has waited,
deliveries by channel and status over the last 24 hours, the newest failures
and the deliveries waiting for a retry. With REG_ID: every burst of stage
changes (how many were merged into one message, how the burst was closed)
and, under each, every channel's delivery: sent or skipped and why, provider
ids, delivery status, attempts and errors. Rich tables for people; `--json`
prints one JSON document for scripts.

Phone numbers are masked to their last four digits everywhere, including
inside provider error messages: this output gets pasted into tickets and chats
(tasks/masking.py). The timeline is in timeline.py, the printing in printing.py.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from tasks.cli import timeline
from tasks.cli.database_url import (
    add_database_url_option,
    database,
    parse_registration_id,
)
from tasks.cli.printing import (
    console,
    describe_error,
    duration,
    print_json,
    print_rows,
    relative,
    text,
    when,
)
from tasks.exceptions import CommandError
from tasks.masking import mask_recipient, mask_text

if TYPE_CHECKING:
    from db.status import DeliveryCount, FailedDelivery, QueueSummary, RetryingDelivery

#: The window of the "deliveries by channel and status" table.
WINDOW_S = 24 * 3600

#: Statuses in the order a delivery moves through them, for stable columns.
STATUS_ORDER = (
    "queued", "sending", "sent", "delivered", "skipped",
    "failed", "undelivered", "bounced", "complained",
)


# ── The command ──────────────────────────────────────────────────────────────


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser(
        "status",
        help="queue depth, recent deliveries and failures; with REG_ID, one registration's "
        "timeline",
        description="Without REG_ID: the queue, deliveries in the last 24 h, failures and "
        "retries. With REG_ID: every stage change of that registration and what each "
        "channel did about it.",
    )
    add_database_url_option(p)
    p.add_argument("registration_id", nargs="?", metavar="REG_ID",
                   help="a registration's uuid: show its timeline")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--limit", type=int, default=10, metavar="N",
                   help="rows in the failed and waiting-for-retry lists (default: 10)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the overview, or the timeline of REG_ID."""
    if args.registration_id is not None:
        registration_id = parse_registration_id(args.registration_id)
        return timeline.show(args, registration_id)
    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    return _overview(args)


# ── Overview ─────────────────────────────────────────────────────────────────


def _overview(args: argparse.Namespace) -> int:
    from db import status as db_status

    with database(args) as conn:
        summary = db_status.queue_summary(conn)
        counts = db_status.delivery_counts(conn, window_s=WINDOW_S)
        failed = db_status.recent_failed(conn, limit=args.limit)
        waiting = db_status.retrying(conn, limit=args.limit)

    if args.json:
        print_json(overview_document(summary, counts, failed, waiting))
    else:
        _print_overview(summary, counts, failed, waiting)
    return 0


def overview_document(
    summary: QueueSummary,
    counts: Sequence[DeliveryCount],
    failed: Sequence[FailedDelivery],
    waiting: Sequence[RetryingDelivery],
) -> dict[str, Any]:
    """The overview as one JSON-ready dict."""
    by_channel: dict[str, dict[str, int]] = {"sms": {}, "email": {}}
    for c in counts:
        by_channel.setdefault(c.channel, {})[c.status] = c.n
    return {
        "generated_at": summary.measured_at,
        "queue": {
            "pending": summary.pending,
            "due_now": summary.due_now,
            "oldest_due_age_s": summary.oldest_due_age_s,
            "next_due_in_s": summary.next_due_in_s,
        },
        "deliveries_last_24h": {
            "window_s": WINDOW_S,
            "by_channel": by_channel,
            "total": sum(c.n for c in counts),
        },
        "failed": [_failed_json(f) for f in failed],
        "waiting_for_retry": [
            {
                **asdict(w),
                "recipient": mask_recipient(w.channel, w.recipient),
                "error_message": mask_text(w.error_message),
            }
            for w in waiting
        ],
    }


def _failed_json(f: FailedDelivery) -> dict[str, Any]:
    return {
        **asdict(f),
        "recipient": mask_recipient(f.channel, f.recipient),
        "error_message": mask_text(f.error_message),
    }


def _print_overview(
    summary: QueueSummary,
    counts: Sequence[DeliveryCount],
    failed: Sequence[FailedDelivery],
    waiting: Sequence[RetryingDelivery],
) -> None:
    from rich.table import Table

    out = console()
    now = summary.measured_at

    queue = Table(title="Queue", title_justify="left")
    for column in ("pending", "due now", "oldest due waiting", "next due in"):
        queue.add_column(column, justify="right")
    queue.add_row(
        text(summary.pending),
        text(summary.due_now),
        text(duration(summary.oldest_due_age_s) or "-"),
        text(duration(summary.next_due_in_s) or "-"),
    )
    out.print(queue)

    statuses = sorted({c.status for c in counts}, key=_status_rank)
    if counts:
        table = Table(title="Deliveries, last 24 h", title_justify="left")
        table.add_column("channel")
        for status in statuses:
            table.add_column(status, justify="right")
        table.add_column("total", justify="right")
        for channel in sorted({c.channel for c in counts}):
            row = {c.status: c.n for c in counts if c.channel == channel}
            table.add_row(
                text(channel),
                *(text(row.get(s, 0)) for s in statuses),
                text(sum(row.values())),
            )
        out.print(table)
    else:
        out.print("Deliveries, last 24 h: none")

    if failed:
        print_rows(
            out,
            ("id", "registration", "customer", "channel", "error", "tries", "failed at"),
            [(f.id, f.registration_id, f.customer_name, f.channel,
              describe_error(f.error_code, f.error_message), f.attempts, when(f.failed_at))
             for f in failed],
            title="Failed deliveries, newest first (retry-failed re-drives these)",
        )
    else:
        out.print("Failed deliveries: none")

    if waiting:
        print_rows(
            out,
            ("id", "registration", "customer", "channel", "last error", "tries", "next attempt"),
            [(w.id, w.registration_id, w.customer_name, w.channel,
              describe_error(w.error_code, w.error_message), w.attempts,
              f"{when(w.next_attempt_at)} ({relative(w.next_attempt_at, now)})")
             for w in waiting],
            title="Waiting for a retry",
        )
    else:
        out.print("Waiting for a retry: none")


def _status_rank(status: str) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)
