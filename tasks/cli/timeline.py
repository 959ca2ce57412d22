"""`regnotify status REG_ID`: one registration's timeline.

Every burst of stage changes (how many were merged into one message, how the
burst was closed) and, under each, every channel's delivery: sent or skipped
and why, provider ids, delivery status, attempts and errors.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tasks.cli.database_url import database
from tasks.cli.delivery_notes import delivery_note
from tasks.cli.pref_timeline import (
    pref_changes_json,
    preference_changed_while_waiting,
    print_pref_changes,
)
from tasks.cli.printing import (
    console,
    describe_error,
    print_json,
    print_rows,
    relative,
    text,
    when,
)
from tasks.cli.reply_timeline import print_replies, replies_json
from tasks.exceptions import CommandError
from tasks.masking import mask_email, mask_phone, mask_recipient, mask_text

if TYPE_CHECKING:
    from rich.console import Console

    from db.status import DeliveryEntry, QueueEntry, RegistrationDetail

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


def show(args: argparse.Namespace, registration_id: str) -> int:
    from db import front_door
    from db import replies as db_replies

    # notification_timeline is what the API and PostgREST serve; the CLI
    # reads it as the backend and prints it as it always has.
    with database(args) as conn:
        front_door.act_as_backend(conn)
        doc = front_door.notification_timeline(conn, registration_id)
        if doc is None:
            raise CommandError(f"no registration {registration_id}")
        replies = db_replies.timeline(conn, registration_id)
        now = conn.exec_driver_sql("SELECT now()").scalar_one()
    reg, queue, rows, changes = front_door.timeline_records(doc)

    if args.json:
        print_json({**timeline_document(reg, queue, rows),
                    "preference_changes": pref_changes_json(changes),
                    "replies": replies_json(replies)})
    else:
        _print_timeline(reg, queue, rows, now)
        print_pref_changes(console(), changes)
        print_replies(console(), replies)
    return 0


def _registration_json(reg: RegistrationDetail) -> dict[str, Any]:
    return {**asdict(reg), "customer_phone": mask_phone(reg.customer_phone),
            "customer_email": mask_email(reg.customer_email)}


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
        ("E-mail", mask_email(reg.customer_email) or "(none)"),
        ("Preference", reg.notification_pref),
        ("Language", _language(reg)),
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
    # `regnotify send` queues a row without an old stage: no change to show.
    stages = (f"{q.old_stage} -> {q.new_stage}" if q.old_stage
              else f"manual send: {q.new_stage}")
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
        ("channel", "status", "lang", "detail", "message id", "tries", "at"),
        [(d.channel, d.status, d.language or "", _detail(d, now), d.provider_message_id,
          d.attempts, _delivery_time(d)) for d in deliveries],
    )


def _language(reg: RegistrationDetail) -> str:
    if reg.language:
        return reg.language
    return f"{reg.effective_language} (the default)"


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
        changed = preference_changed_while_waiting(d)
        return f"{reason}: {changed or SKIP_REASONS.get(reason, reason)}"
    error = describe_error(d.error_code, d.error_message)
    if d.status in ("queued", "sending") and d.next_attempt_at is not None:
        retry = f"retry {relative(d.next_attempt_at, now)}"
        return f"{error} ({retry})" if error else retry
    return error


def _delivery_time(d: DeliveryEntry) -> str:
    """When it reached its current status (the status column says which)."""
    return when(d.delivered_at or d.sent_at or d.updated_at)
