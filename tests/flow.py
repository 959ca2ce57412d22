"""Helpers for delivery tests: make queue rows due, run a tick, read the audit."""

from __future__ import annotations

from typing import Any

import psycopg


def change_stage(conn: psycopg.Connection, registration_id: str, stage: str,
                 *, silence: bool = False) -> None:
    """What staff do: move a registration (optionally silencing this change)."""
    if silence:
        conn.execute(
            "UPDATE registrations SET current_stage = %s, pending_notify_customer = false "
            "WHERE id = %s", (stage, registration_id))
    else:
        conn.execute("UPDATE registrations SET current_stage = %s WHERE id = %s",
                     (stage, registration_id))


def make_due(conn: psycopg.Connection) -> int:
    """End every pending debounce window now; returns how many rows."""
    cur = conn.execute(
        "UPDATE notification_queue SET send_after = now() - interval '1 second' "
        "WHERE sent = false")
    return cur.rowcount


def run_tick() -> dict[str, Any]:
    """Run process_notification_queue through Celery (eager in these tests)."""
    from tasks.worker.queue_tick import process_notification_queue

    return process_notification_queue.apply().get()


def deliveries(conn: psycopg.Connection, registration_id: str | None = None) -> list[dict]:
    """Audit rows, by channel then id."""
    if registration_id:
        return conn.execute(
            "SELECT * FROM registration_notifications WHERE registration_id = %s "
            "ORDER BY channel, id", (registration_id,)).fetchall()
    return conn.execute("SELECT * FROM registration_notifications ORDER BY channel, id").fetchall()


def by_channel(rows: list[dict]) -> dict[str, dict]:
    """{channel: row} for one queue row's deliveries."""
    return {r["channel"]: r for r in rows}
