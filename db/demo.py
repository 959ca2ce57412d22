"""Data access for `regnotify demo`: its registrations, stage changes and what became of them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from db.queries import query


def get_debounce(conn: Connection) -> tuple[float, float]:
    """(debounce_window, max_wait) in seconds."""
    row = conn.exec_driver_sql(query("demo_get_config")).one()
    return float(row.window_s), float(row.max_wait_s)


def set_debounce(conn: Connection, window_s: float, max_wait_s: float) -> None:
    """Change the debounce window and cap."""
    conn.exec_driver_sql(query("demo_set_config"),
                         {"window_s": window_s, "max_wait_s": max_wait_s})


def add_registration(conn: Connection, **values: Any) -> str:
    """Insert a demo registration; returns its id."""
    return str(conn.exec_driver_sql(query("demo_insert_registration"), values).scalar_one())


def change_stage(conn: Connection, registration_id: str, stage: str, *, silence: bool) -> None:
    """A staff member's stage change, optionally silenced."""
    conn.exec_driver_sql(query("demo_change_stage"),
                         {"id": registration_id, "stage": stage, "silence": silence})


def deliveries(conn: Connection, ids: list[str]) -> list[dict[str, Any]]:
    """The deliveries of these registrations, with the customer's name."""
    rows = conn.exec_driver_sql(query("demo_deliveries"), {"ids": ids}).mappings().all()
    return [dict(r) for r in rows]


def pending(conn: Connection, ids: list[str]) -> int:
    """Queue rows of these registrations still waiting for their window."""
    return int(conn.exec_driver_sql(query("demo_pending"), {"ids": ids}).scalar_one())
