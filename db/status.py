"""Read-only views of the queue and the delivery audit, for `regnotify status` and retry-failed.

Each function runs one named query from sql/queries/status.sql and returns
plain dataclasses; presentation (masking, tables, JSON) is the command's job.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection

from db.queries import query

T = TypeVar("T")


@dataclass(frozen=True)
class QueueSummary:
    """The debounce queue right now."""

    pending: int
    due_now: int
    oldest_due_age_s: float | None
    next_due_in_s: float | None
    measured_at: datetime


@dataclass(frozen=True)
class DeliveryCount:
    """How many deliveries of one channel are in one status."""

    channel: str
    status: str
    n: int


@dataclass(frozen=True)
class FailedDelivery:
    """A delivery whose send failed for good (what retry-failed re-drives)."""

    id: int
    registration_id: str
    customer_name: str | None
    channel: str
    recipient: str | None
    new_stage: str | None
    error_code: str | None
    error_message: str | None
    attempts: int
    failed_at: datetime
    #: The last attempt may have been accepted: a re-drive may send it twice.
    outcome_unknown: bool = False


@dataclass(frozen=True)
class RetryingDelivery:
    """A delivery waiting for its next attempt after a transient error."""

    id: int
    registration_id: str
    customer_name: str | None
    channel: str
    recipient: str | None
    status: str
    attempts: int
    error_code: str | None
    error_message: str | None
    next_attempt_at: datetime


@dataclass(frozen=True)
class RegistrationDetail:
    """One registration with what its notifications depend on."""

    id: str
    customer_name: str
    customer_phone: str | None
    customer_email: str | None
    notification_pref: str
    current_stage: str
    current_stage_label: str | None
    vehicle_year: int | None
    vehicle_make: str | None
    vehicle_model: str | None
    vin: str | None
    plate_number: str | None
    created_at: datetime
    updated_at: datetime
    sms_opted_out: bool
    #: The registration's own language, or None for the configured default.
    language: str | None = None
    #: The language its messages go in.
    effective_language: str = "en"


@dataclass(frozen=True)
class QueueEntry:
    """One notification_queue row: a burst of stage changes merged into one message."""

    id: int
    created_at: datetime
    updated_at: datetime
    old_stage: str | None
    new_stage: str
    change_count: int
    notify_customer: bool
    send_after: datetime
    sent: bool
    closed_reason: str | None
    processed_at: datetime | None


@dataclass(frozen=True)
class DeliveryEntry:
    """One registration_notifications row as the timeline shows it."""

    id: int
    queue_id: int | None
    channel: str
    recipient: str | None
    status: str
    skip_reason: str | None
    old_stage: str | None
    new_stage: str | None
    provider: str | None
    provider_message_id: str | None
    template_used: str | None
    subject: str | None
    attempts: int
    error_code: str | None
    error_message: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    # Quiet hours and fallback (migration 10); see tasks/cli/delivery_notes.py.
    hold_reason: str | None = None
    held_until: datetime | None = None
    hold_zone: str | None = None
    held_until_local: str | None = None
    fallback_for: int | None = None
    fallback_for_channel: str | None = None
    fallback_for_status: str | None = None
    fallback_for_error_code: str | None = None
    replaced_by: int | None = None
    #: The language the message went in (set when it was sent).
    language: str | None = None
    outcome_unknown: bool = False
    # Skipped for 'preference': the change of preference that did it (the
    # newest one between the delivery's creation and its skip).
    pref_changed_at: datetime | None = None
    pref_changed_from: str | None = None
    pref_changed_to: str | None = None
    pref_changed_by_kind: str | None = None


@dataclass(frozen=True)
class PrefChange:
    """One change of a registration's notification_pref, and who made it."""

    id: int
    changed_at: datetime
    old_pref: str | None
    new_pref: str
    changed_by_kind: str
    changed_by: str | None


def _build(cls: type[T], row: Mapping[str, Any]) -> T:
    """A dataclass from a result row; uuids become strings so callers can print and dump them."""
    values = {f.name: row[f.name] for f in fields(cls)}  # type: ignore[arg-type]
    for key, value in values.items():
        if isinstance(value, uuid.UUID):
            values[key] = str(value)
    return cls(**values)


def _all(conn: Connection, name: str, params: Mapping[str, Any], cls: type[T]) -> list[T]:
    rows = conn.exec_driver_sql(query(name), dict(params)).mappings().all()
    return [_build(cls, row) for row in rows]


def queue_summary(conn: Connection) -> QueueSummary:
    """Pending rows, due rows, the oldest due row's wait, the next row's due time."""
    row = conn.exec_driver_sql(query("status_queue_summary")).mappings().one()
    return _build(QueueSummary, row)


def delivery_counts(conn: Connection, *, window_s: float) -> list[DeliveryCount]:
    """Deliveries created in the last `window_s` seconds, by channel and status."""
    return _all(conn, "status_delivery_counts", {"window_s": window_s}, DeliveryCount)


def recent_failed(conn: Connection, *, limit: int) -> list[FailedDelivery]:
    """The newest `limit` failed deliveries, newest first."""
    return _all(conn, "status_recent_failed", {"limit": limit}, FailedDelivery)


def retrying(conn: Connection, *, limit: int) -> list[RetryingDelivery]:
    """Up to `limit` deliveries waiting for a retry, the soonest first."""
    return _all(conn, "status_retrying", {"limit": limit}, RetryingDelivery)


def registration(conn: Connection, registration_id: str) -> RegistrationDetail | None:
    """The registration, or None when there is no such id."""
    row = conn.exec_driver_sql(
        query("status_registration"), {"registration_id": registration_id}
    ).mappings().first()
    return None if row is None else _build(RegistrationDetail, row)


def deliveries_by_id(conn: Connection, ids: Sequence[int]) -> list[FailedDelivery]:
    """Failed-delivery details for the given ids (read before a requeue clears the error)."""
    if not ids:
        return []
    return _all(conn, "status_deliveries_by_id", {"ids": list(ids)}, FailedDelivery)
