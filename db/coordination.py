"""Coordination state in PostgreSQL (sql/queries/coordination.sql).

Rate-limit slots, departure gates (also the sign-in counters), the tick
marker, the wake-up time and the workers' counters, as rows of
coordination_slots: the PostgreSQL engine of tasks.coordination.store.
"""

from __future__ import annotations

from sqlalchemy import Connection

from db.queries import query


def rate_reserve(
    conn: Connection, name: str, *, interval: float, tolerance: float, max_wait: float
) -> tuple[bool, float]:
    """(granted, wait_s) for the next slot of limiter `name`."""
    params = {"name": name, "interval": interval, "tolerance": tolerance, "max_wait": max_wait}
    row = conn.exec_driver_sql(query("rate_reserve"), params).first()
    if row is None:
        # The statement's own INSERT made the row, which its UPDATE cannot see yet.
        row = conn.exec_driver_sql(query("rate_reserve"), params).first()
    if row is None:
        return False, interval
    return bool(row.granted), float(row.wait)


def rate_defer(conn: Connection, name: str, seconds: float) -> None:
    """No slot of limiter `name` before `seconds` from now."""
    conn.exec_driver_sql(query("rate_defer"), {"name": name, "seconds": seconds})


def marker_set_if_absent(conn: Connection, name: str, ttl_s: float) -> bool:
    """Set marker `name` for `ttl_s` unless it is set; True when this call set it."""
    return conn.exec_driver_sql(
        query("marker_set_if_absent"), {"name": name, "ttl_s": ttl_s}
    ).first() is not None


def marker_set(conn: Connection, name: str, ttl_s: float) -> None:
    """Set marker `name` for `ttl_s`, whatever it held."""
    conn.exec_driver_sql(query("marker_set"), {"name": name, "ttl_s": ttl_s})


def marker_clear(conn: Connection, name: str) -> None:
    """Clear marker `name`."""
    conn.exec_driver_sql(query("marker_clear"), {"name": name})


def forget(conn: Connection, name: str, group_prefix: str) -> None:
    """Drop the row `name` (a marker, a gate's entries, a slot) and the rows of group `name`."""
    conn.exec_driver_sql(query("coordination_forget"), {"name": name, "group": group_prefix})


def wake_arm(conn: Connection, name: str, countdown_s: float) -> bool:
    """Arm the wake-up `countdown_s` from now; True when the caller must schedule it."""
    return conn.exec_driver_sql(
        query("wake_arm"), {"name": name, "countdown_s": countdown_s}
    ).first() is not None


def gate(conn: Connection, name: str, limit: int, window_s: float,
         hold_s: float) -> tuple[float, float | None]:
    """(0, logged time) when a call may leave now, else (seconds until one may, None).

    An admitted call is logged `hold_s` ahead, holding its place while it is
    out; `gate_landed` moves it to when its answer came back.
    """
    params = {"name": name, "limit": limit, "window_s": window_s, "hold_s": hold_s}
    row = conn.exec_driver_sql(query("gate_depart"), params).first()
    if row is None:
        # The statement's own INSERT made the row, which its UPDATE cannot see yet.
        row = conn.exec_driver_sql(query("gate_depart"), params).first()
    if row is None or row.wait is None:
        return 0.01, None  # not admitted unlogged: the caller asks again
    if row.logged_at is not None:
        return 0.0, float(row.logged_at)
    return max(0.0, float(row.wait)), None


def gate_landed(conn: Connection, name: str, logged_at: float) -> None:
    """The call logged at `logged_at` has its answer: log it at this moment instead."""
    conn.exec_driver_sql(query("gate_landed"), {"name": name, "logged_at": logged_at})


def gate_prune(conn: Connection) -> None:
    """Drop gates idle for a day (nothing is left in their windows)."""
    conn.exec_driver_sql(query("gate_prune"), {})


def counters_add(conn: Connection, amounts: dict[str, float]) -> None:
    """Add to the counters named in `amounts` (rows `group#field`)."""
    names = sorted(amounts)
    conn.exec_driver_sql(query("counters_add"),
                         {"names": names, "amounts": [float(amounts[n]) for n in names]})


def counters_read(conn: Connection, prefix: str) -> dict[str, float]:
    """{field: value} of the counters whose names start with `prefix`."""
    rows = conn.exec_driver_sql(query("counters_read"), {"prefix": prefix})
    return {row.field: float(row.value) for row in rows}
