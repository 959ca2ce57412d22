"""Quiet-hours test set-up: a window placed around the database's own clock.

A test cannot wait until 21:00, so the window is set relative to "now" in a
zone: "now" falls inside it and it opens a few seconds later.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import psycopg


def set_quiet_window(conn: psycopg.Connection, zone: str, start_s: float, end_s: float,
                     channels: str = "{sms}") -> datetime:
    """Quiet hours from now+start_s to now+end_s, as local times of `zone`; returns now."""
    row = conn.execute(
        "UPDATE notification_config SET quiet_hours_channels = %(ch)s::text[], "
        "quiet_hours_start = ((now() AT TIME ZONE %(z)s) + make_interval(secs => %(a)s))::time, "
        "quiet_hours_end = ((now() AT TIME ZONE %(z)s) + make_interval(secs => %(b)s))::time "
        "RETURNING now() AS now",
        {"ch": channels, "z": zone, "a": start_s, "b": end_s}).fetchone()
    assert row is not None
    return row["now"]


def db_now(conn: psycopg.Connection) -> datetime:
    """The database's clock."""
    return conn.execute("SELECT clock_timestamp() AS t").fetchone()["t"]


def wait_until(conn: psycopg.Connection, moment: datetime) -> None:
    """Sleep until the database's clock has passed `moment`."""
    while True:
        left = (moment - db_now(conn)).total_seconds()
        if left < 0:
            return
        time.sleep(min(left + 0.05, 1.0))


def held(conn: psycopg.Connection, registration_id: str) -> list[dict[str, Any]]:
    """The registration's deliveries held right now."""
    return conn.execute(
        "SELECT * FROM registration_notifications WHERE registration_id = %s "
        "AND hold_reason IS NOT NULL ORDER BY id", (registration_id,)).fetchall()
