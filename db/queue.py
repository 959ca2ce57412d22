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


def request_manual_send(
    conn: Connection, registration_id: str, *, bypass_quiet_hours: bool = False
) -> bool:
    """Make a message about the current stage due now; False if no such registration.

    `bypass_quiet_hours` (`regnotify send --now`) sends it even inside the
    customer's quiet hours.
    """
    found = conn.exec_driver_sql(
        query("registration_exists"), {"registration_id": registration_id}
    ).scalar()
    if not found:
        return False
    conn.exec_driver_sql(query("request_manual_send"),
                         {"registration_id": registration_id,
                          "bypass_quiet_hours": bypass_quiet_hours})
    return True


def sms_quiet_until(conn: Connection, registration_id: str) -> datetime | None:
    """When the customer's quiet hours end, if a text sent now would be held; else None."""
    return conn.exec_driver_sql(query("sms_quiet_until"),
                                {"registration_id": registration_id}).scalar()


def seconds_until_next_due(conn: Connection) -> float | None:
    """Seconds (database clock) until the next pending row is due or held delivery is released.

    None when nothing waits.
    """
    value = conn.exec_driver_sql(query("seconds_until_next_due")).scalar()
    return None if value is None else float(value)
