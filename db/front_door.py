"""The front door's SQL surface (migration 13): request_notification and notification_timeline.

`regnotify send`/`status` and the relay's /api routes call the same SQL
functions through here. The functions run as whoever calls them: the API
passes a connection from db.as_caller; the CLI its own, marked as the
backend with act_as_backend(). What the functions refuse on purpose (42501
not allowed, P0002 not found) comes out as the connector names it:
CallerNotAllowed, RegistrationNotFound; any other database error as its
member of the family too (db.connector).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection

from db.connector import family_errors
from db.queries import query
from db.status import DeliveryEntry, PrefChange, QueueEntry, RegistrationDetail

T = TypeVar("T")


def act_as_backend(conn: Connection) -> None:
    """Mark this transaction as the backend's (service_role claims), as the CLI is."""
    conn.exec_driver_sql(query("act_as_backend"))


@family_errors()
def _call(conn: Connection, name: str, params: Mapping[str, Any]) -> Any:
    return conn.exec_driver_sql(query(name), dict(params)).scalar()


def request_notification(conn: Connection, registration_id: str, *,
                         bypass_quiet_hours: bool = False) -> dict[str, Any]:
    """The function's answer: {"queued": true, "channels": [...]} or {"queued": false, ...}.

    Raises RegistrationNotFound or CallerNotAllowed.
    """
    return _call(conn, "request_notification", {"registration_id": registration_id,
                                                "bypass_quiet_hours": bypass_quiet_hours})


def notification_timeline(conn: Connection, registration_id: str) -> dict[str, Any] | None:
    """{"registration_id", "registration", "events"}; None when the caller cannot see it."""
    return _call(conn, "notification_timeline", {"registration_id": registration_id})


def my_registrations(conn: Connection) -> list[dict[str, Any]]:
    """The caller's own registrations: stage with label and position, vehicle, preference."""
    return _call(conn, "my_registrations", {})


def update_my_registration(conn: Connection, registration_id: str,
                           changes: Mapping[str, Any], editable: tuple[str, ...]
                           ) -> dict[str, Any] | None:
    """Set `changes` (keys among `editable`) on one of the caller's registrations.

    None when it is not theirs or does not exist. `editable` names the fields
    update_my_registration's SQL has a line for.
    """
    params = update_params(registration_id, changes, editable)
    with family_errors():
        row = conn.exec_driver_sql(query("update_my_registration"), params).mappings().first()
    return None if row is None else {key: str(value) if key == "id" else value
                                     for key, value in row.items()}


def update_params(registration_id: str, changes: Mapping[str, Any],
                  editable: tuple[str, ...]) -> dict[str, Any]:
    """update_my_registration's parameters: per editable field, whether it is set and to what."""
    params: dict[str, Any] = {"registration_id": registration_id}
    for name in editable:
        params[f"set_{name}"] = name in changes
        params[name] = changes.get(name)
    return params


# ── The timeline as the status command's records ─────────────────────────────


def _record(cls: type[T], data: Mapping[str, Any]) -> T:
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        value = data.get(f.name)
        if isinstance(value, str) and "datetime" in str(f.type):
            value = datetime.fromisoformat(value)
        values[f.name] = value
    return cls(**values)


def timeline_records(doc: Mapping[str, Any]) -> tuple[
        RegistrationDetail, list[QueueEntry], list[DeliveryEntry], list[PrefChange]]:
    """The registration, its bursts, its deliveries and its preference changes, as records.

    In the order `regnotify status` always listed them: bursts and changes
    oldest first; deliveries by burst, texts before e-mails.
    """
    events = doc["events"]
    reg = _record(RegistrationDetail, doc["registration"])
    queue = [_record(QueueEntry, {**e, "id": e["queue_id"]})
             for e in events if e["kind"] == "stage_change"]
    queue.sort(key=lambda q: (q.created_at, q.id))
    deliveries = [_record(DeliveryEntry, e) for e in events if e["kind"] == "message"]
    deliveries.sort(key=lambda d: (d.queue_id is None, d.queue_id or 0,
                                   0 if d.channel == "sms" else 1, d.id))
    changes = [_record(PrefChange, e) for e in events if e["kind"] == "preference_change"]
    changes.sort(key=lambda c: (c.changed_at, c.id))
    return reg, queue, deliveries, changes
