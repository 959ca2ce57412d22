"""Quiet hours: deliveries held until the customer's quiet window opens (sql/queries/holds.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

from sqlalchemy import Connection

from db.queries import query
from db.queue import DeliveryRef


@dataclass(frozen=True)
class HeldFigures:
    """Deliveries held right now on one channel."""

    channel: str
    held: int
    next_release_in_s: float


def release_due(conn: Connection, limit: int) -> list[DeliveryRef]:
    """Lift the hold of up to `limit` deliveries whose window opened; dispatch them after commit."""
    rows = conn.exec_driver_sql(query("release_held_due"), {"limit": limit}).all()
    return [DeliveryRef(int(r.id), str(r.channel)) for r in rows]


def held_figures(conn: Connection) -> list[HeldFigures]:
    """Held deliveries by channel, with how soon the first one is released."""
    rows = conn.exec_driver_sql(query("held_count")).all()
    return [HeldFigures(str(r.channel), int(r.held), float(r.next_release_in_s)) for r in rows]


def release_at(conn: Connection, at: datetime, zone: str, start: time, end: time
               ) -> datetime | None:
    """When the quiet window containing `at` opens in `zone`; None outside it."""
    return conn.exec_driver_sql(
        query("quiet_hours_release_at"), {"at": at, "zone": zone, "start": start, "end": end}
    ).scalar()
