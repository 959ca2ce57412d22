"""`regnotify status [REG_ID]`: the pipeline at a glance, or one registration's timeline.

Without REG_ID: queue depth, rows due now and how long the oldest has waited,
deliveries by channel and status over the last 24 hours, the newest failures
and the deliveries waiting for a retry. With REG_ID: every burst of stage
changes (how many were merged into one message, how the burst was closed)
and, under each, every channel's delivery: sent or skipped and why, provider
ids, delivery status, attempts and errors. Rich tables for people; `--json`
prints one JSON document for scripts.

Phone numbers are masked to their last four digits everywhere, including
inside provider error messages: this output gets pasted into tickets and chats.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tasks.commands.database_url import add_database_url_option, use_database_url
from tasks.commands.delivery_notes import delivery_note
from tasks.commands.errors import CommandError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text
    from sqlalchemy import Connection

    from db.status import (
        DeliveryCount,
        DeliveryEntry,
        FailedDelivery,
        QueueEntry,
        QueueSummary,
        RegistrationDetail,
        RetryingDelivery,
    )

#: The window of the "deliveries by channel and status" table.
WINDOW_S = 24 * 3600

#: Statuses in the order a delivery moves through them, for stable columns.
STATUS_ORDER = (
    "queued", "sending", "sent", "delivered", "skipped",
    "failed", "undelivered", "bounced", "complained",
)

#: What each skip reason means, for people reading a timeline.
SKIP_REASONS = {
    "preference": "not a channel the customer chose",
    "silenced": "staff silenced this change",
    "no_contact": "no address for this channel",
    "opted_out": "the number opted out of texts",
    "no_net_change": "the burst ended on the stage it began",
    "superseded": "held for quiet hours, then replaced by a newer change's message",
}

#: How a burst (queue row) was closed.
CLOSED_REASONS = {
    "processed": "processed",
    "no_net_change": "closed: ended where it began, nothing to send",
    "silenced": "closed: silenced by staff",
    "manual": "manual send (regnotify send)",
}

# E.164 numbers inside free text (provider error messages quote the 'To').
_PHONE_IN_TEXT = re.compile(r"(?<!\w)\+?[1-9]\d{6,14}(?!\w)")


# ── Helpers shared with retry-failed ─────────────────────────────────────────


def parse_registration_id(value: str) -> str:
    """The canonical form of a registration uuid, or a one-line error."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise CommandError(f"not a registration id (a uuid): {value!r}") from None


def mask_phone(phone: str | None) -> str | None:
    """Keep the '+' and the last four digits: '+15551230001' -> '+*******0001'."""
    if not phone:
        return phone
    digits = sum(ch.isdigit() for ch in phone)
    seen = 0
    out = []
    for ch in phone:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > digits - 4 else "*")
        else:
            out.append(ch)
    return "".join(out)


def mask_text(text: str | None) -> str | None:
    """Mask every phone number found in free text."""
    if not text:
        return text
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)) or "", text)


def mask_recipient(channel: str, recipient: str | None) -> str | None:
    """SMS recipients are phone numbers and get masked; e-mail addresses are shown."""
    return mask_phone(recipient) if channel == "sms" else recipient


def jsonable(value: Any) -> Any:
    """`json.dumps` default: ISO 8601 for times."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_json(document: dict[str, Any]) -> None:
    """One JSON document on stdout."""
    print(json.dumps(document, indent=2, default=jsonable))


def console() -> Console:
    """A console on the current stdout (tests swap it); data is never read as markup."""
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False)


def text(value: Any) -> Text:
    """A table cell holding data verbatim: a '[' in an error message is not rich markup."""
    from rich.text import Text

    return Text("" if value is None else str(value))


#: Columns of free text: they wrap to fit. Every other column (ids, addresses,
#: times, counts) stays on one line so it can be copied whole.
_WRAPPING = frozenset({"customer", "detail", "error", "last error"})

#: Narrowest a wrapping column gets before a table no longer fits.
_WRAP_MIN = 24


def print_rows(
    out: Console, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str = ""
) -> None:
    """Rows as a table when the terminal fits its one-line columns, else one block per row.

    A table squeezed below its ids' width would cut them ('SM9135bc…'); the
    block layout (label, value) never cuts anything at any width.
    """
    from rich.cells import cell_len
    from rich.table import Table

    cells = [["" if v is None else str(v) for v in row] for row in rows]
    needed = 1
    for i, name in enumerate(columns):
        longest = max([cell_len(name), *(cell_len(row[i]) for row in cells)])
        needed += 3 + (min(longest, _WRAP_MIN) if name in _WRAPPING else longest)
    if needed <= out.width:
        table = Table(title=title or None, title_justify="left")
        for name in columns:
            if name in _WRAPPING:
                table.add_column(name, overflow="fold")
            else:
                table.add_column(name, no_wrap=True)
        for row in cells:
            table.add_row(*(text(v) for v in row))
        out.print(table)
        return
    if title:
        out.print(text(title))
    for row in cells:
        block = Table.grid(padding=(0, 2))
        block.add_column(no_wrap=True, style="bold")
        block.add_column(overflow="fold")
        for name, value in zip(columns, row, strict=True):
            if value:
                block.add_row(text(name), text(value))
        out.print(block)
        out.print()


def when(value: datetime | None) -> str:
    """A timestamp in local time, to the second."""
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """'45s', '3m 05s', '2h 10m', '3d 4h'."""
    if seconds is None:
        return ""
    s = round(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def relative(value: datetime | None, now: datetime) -> str:
    """'3m 05s ago' or 'in 2m 00s'."""
    if value is None:
        return ""
    delta = (value - now).total_seconds()
    return f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"


@contextmanager
def database(args: argparse.Namespace) -> Iterator[Connection]:
    """A transaction on the configured database; an unreachable server is a one-line error."""
    from sqlalchemy.exc import OperationalError

    from db.connection import redacted
    from tasks.database import engine

    url = use_database_url(args)
    try:
        with engine().begin() as conn:
            yield conn
    except OperationalError as exc:
        first_line = str(exc.orig or exc).strip().splitlines()[0]
        raise CommandError(f"database {redacted(url)}: {first_line}") from None


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
        return _timeline(args, registration_id)
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


def describe_error(code: str | None, message: str | None) -> str:
    """'code: message' with phone numbers masked, or whichever of the two there is."""
    message = mask_text(message)
    if code and message:
        return f"{code}: {message}"
    return code or message or ""


# ── Timeline ─────────────────────────────────────────────────────────────────


def _timeline(args: argparse.Namespace, registration_id: str) -> int:
    from db import status as db_status

    with database(args) as conn:
        reg = db_status.registration(conn, registration_id)
        if reg is None:
            raise CommandError(f"no registration {registration_id}")
        queue = db_status.registration_queue(conn, registration_id)
        rows = db_status.registration_deliveries(conn, registration_id)
        now = conn.exec_driver_sql("SELECT now()").scalar_one()

    if args.json:
        print_json(timeline_document(reg, queue, rows))
    else:
        _print_timeline(reg, queue, rows, now)
    return 0


def _registration_json(reg: RegistrationDetail) -> dict[str, Any]:
    return {**asdict(reg), "customer_phone": mask_phone(reg.customer_phone)}


def _delivery_json(d: DeliveryEntry) -> dict[str, Any]:
    return {
        **asdict(d),
        "recipient": mask_recipient(d.channel, d.recipient),
        "error_message": mask_text(d.error_message),
    }


def timeline_document(
    reg: RegistrationDetail, queue: Sequence[QueueEntry], rows: Sequence[DeliveryEntry]
) -> dict[str, Any]:
    """The timeline as one JSON-ready dict: each queue row carries its deliveries."""
    by_queue, orphans = _group(queue, rows)
    return {
        "registration": _registration_json(reg),
        "queue": [
            {
                **asdict(q),
                "pending": not q.sent,
                "deliveries": [_delivery_json(d) for d in by_queue.get(q.id, [])],
            }
            for q in queue
        ],
        "other_deliveries": [_delivery_json(d) for d in orphans],
    }


def _group(
    queue: Sequence[QueueEntry], rows: Sequence[DeliveryEntry]
) -> tuple[dict[int, list[DeliveryEntry]], list[DeliveryEntry]]:
    """Deliveries by queue row, and those tied to none (written before the queue existed)."""
    known = {q.id for q in queue}
    by_queue: dict[int, list[DeliveryEntry]] = {}
    orphans: list[DeliveryEntry] = []
    for d in rows:
        if d.queue_id is not None and d.queue_id in known:
            by_queue.setdefault(d.queue_id, []).append(d)
        else:
            orphans.append(d)
    return by_queue, orphans


def _print_timeline(
    reg: RegistrationDetail,
    queue: Sequence[QueueEntry],
    rows: Sequence[DeliveryEntry],
    now: datetime,
) -> None:
    from rich.table import Table

    out = console()
    details = Table.grid(padding=(0, 2))
    details.add_column(style="bold")
    details.add_column()
    phone = mask_phone(reg.customer_phone) or "(none)"
    if reg.sms_opted_out:
        phone += "  (opted out of texts)"
    vehicle = " ".join(str(v) for v in (reg.vehicle_year, reg.vehicle_make, reg.vehicle_model)
                       if v)
    stage = reg.current_stage
    if reg.current_stage_label:
        stage += f" ({reg.current_stage_label})"
    for label, value in (
        ("Registration", reg.id),
        ("Customer", reg.customer_name),
        ("Phone", phone),
        ("E-mail", reg.customer_email or "(none)"),
        ("Preference", reg.notification_pref),
        ("Stage", stage),
        ("Vehicle", vehicle or "(none)"),
        ("Created", when(reg.created_at)),
    ):
        details.add_row(label, text(value))
    out.print(details)
    out.print()

    by_queue, orphans = _group(queue, rows)
    if not queue:
        out.print("No stage changes yet.")
    for number, q in enumerate(queue, start=1):
        out.print(text(_burst_heading(number, q, now)))
        deliveries = by_queue.get(q.id, [])
        if deliveries:
            _print_deliveries(out, deliveries, now)
        elif q.sent:
            out.print("  no deliveries recorded")
        out.print()
    if orphans:
        out.print("Other deliveries (not tied to a stage change):")
        _print_deliveries(out, orphans, now)


def _burst_heading(number: int, q: QueueEntry, now: datetime) -> str:
    stages = f"{q.old_stage} -> {q.new_stage}" if q.old_stage else f"-> {q.new_stage}"
    merged = (f"{q.change_count} changes merged into one message" if q.change_count > 1
              else "1 change")
    parts = [f"#{number} (queue {q.id})", when(q.created_at), stages, merged]
    if not q.notify_customer and q.closed_reason != "silenced":
        parts.append("silenced")
    if q.sent:
        reason = CLOSED_REASONS.get(q.closed_reason or "", q.closed_reason or "closed")
        parts.append(f"{reason} at {when(q.processed_at)}")
    else:
        parts.append(f"pending: due {when(q.send_after)} ({relative(q.send_after, now)})")
    return " · ".join(parts)


def _print_deliveries(out: Console, deliveries: Sequence[DeliveryEntry], now: datetime) -> None:
    print_rows(
        out,
        ("channel", "status", "detail", "message id", "tries", "at"),
        [(d.channel, d.status, _detail(d, now), d.provider_message_id, d.attempts,
          _delivery_time(d)) for d in deliveries],
    )


def _detail(d: DeliveryEntry, now: datetime) -> str:
    """Through whom and to whom it went, then why it was skipped or what went wrong."""
    parts = []
    if d.provider:
        recipient = mask_recipient(d.channel, d.recipient)
        parts.append(f"via {d.provider}" + (f" to {recipient}" if recipient else ""))
    parts.append(_why(d, now))
    parts.append(delivery_note(d))  # quiet hours, fallback
    return " — ".join(p for p in parts if p)


def _why(d: DeliveryEntry, now: datetime) -> str:
    if d.status == "skipped":
        reason = d.skip_reason or "unknown"
        return f"{reason}: {SKIP_REASONS.get(reason, reason)}"
    error = describe_error(d.error_code, d.error_message)
    if d.status in ("queued", "sending") and d.next_attempt_at is not None:
        retry = f"retry {relative(d.next_attempt_at, now)}"
        return f"{error} ({retry})" if error else retry
    return error


def _delivery_time(d: DeliveryEntry) -> str:
    """When it reached its current status (the status column says which)."""
    return when(d.delivered_at or d.sent_at or d.updated_at)
