"""The customer page's sign-in counters in PostgreSQL (sql/queries/signin.sql)."""

from __future__ import annotations

from sqlalchemy import Connection

from db.queries import query


def hit(conn: Connection, name: str, limit: int, window_s: float) -> bool:
    """Log one event of counter `name` unless `limit` are within `window_s`; True if logged."""
    return conn.exec_driver_sql(
        query("signin_hit"), {"name": name, "limit": limit, "window_s": window_s}
    ).first() is not None


def clear(conn: Connection, name: str) -> None:
    """Forget counter `name` (a good code ends its checks' count)."""
    conn.exec_driver_sql(query("signin_clear"), {"name": name})


def prune(conn: Connection) -> None:
    """Drop sign-in counters idle for a day."""
    conn.exec_driver_sql(query("signin_prune"), {})
