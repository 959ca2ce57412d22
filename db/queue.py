"""The debounce queue: claiming due rows into deliveries, and when the next one is due."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from db.queries import query


@dataclass(frozen=True)
class DeliveryRef:
    """A delivery to send: its row id and channel (which task sends it)."""

    id: int
    channel: str


@dataclass(frozen=True)
class ClaimResult:
    """What one claim did: queue rows closed, and the deliveries to send."""

    closed: int
    deliveries: list[DeliveryRef]
    #: Deliveries written held for quiet hours (not in `deliveries`).
    held: int = 0
    #: Held deliveries a newer burst replaced (one text per morning).
    superseded: int = 0


def claim_due(conn: Connection, batch: int) -> ClaimResult:
    """Close up to `batch` due queue rows and return the deliveries they produced.

    Runs inside the caller's transaction: dispatch only after it commits.
    """
    row = conn.exec_driver_sql(query("claim_due"), {"batch": batch}).one()
    refs = [DeliveryRef(i, "sms") for i in row.sms_ids]
    refs += [DeliveryRef(i, "email") for i in row.email_ids]
    refs.sort(key=lambda ref: ref.id)
    return ClaimResult(int(row.closed), refs, int(row.held), int(row.superseded))


def next_send_after(conn: Connection) -> datetime | None:
    """The earliest pending send_after, or None when nothing waits."""
    return conn.exec_driver_sql(query("next_send_after")).scalar()


def due_count(conn: Connection) -> int:
    """How many pending rows are due now."""
    return int(conn.exec_driver_sql(query("queue_due_count")).scalar() or 0)


def seconds_until_next_due(conn: Connection) -> float | None:
    """Seconds (database clock) until the next pending row is due or held delivery is released.

    None when nothing waits.
    """
    value = conn.exec_driver_sql(query("seconds_until_next_due")).scalar()
    return None if value is None else float(value)
