"""The random subjects (`sub`) of regnotify's own sessions, one per phone number."""

from __future__ import annotations

from sqlalchemy import Connection

from db.queries import query


def subject_for(conn: Connection, phone: str) -> str:
    """The number's subject, made (random) on its first sign-in."""
    row = conn.exec_driver_sql(query("customer_subject"), {"phone": phone}).one()
    return str(row.subject)
