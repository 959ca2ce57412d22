"""The send path's statements on the psycopg connection itself, under SQLAlchemy's checkout.

`Connection.exec_driver_sql` builds a result's column map afresh for every
statement (there is no compiled statement to cache it on), and wraps each
call in its event and context machinery: together a tenth of a busy worker's
CPU, for the three statements every send runs (load, claim, mark sent).
These run here on the same pooled connection, inside the SQLAlchemy
connection's transaction (begun here when it has none, so its commit or
rollback still applies) or in its autocommit; psycopg prepares them
server-side after a few runs, as before.

psycopg's own errors come out unwrapped: the tasks' retry policy
(db.connector.BRIEFLY_AWAY) and the connector's `family_error` know them. A
lost connection is invalidated, as SQLAlchemy does with the ones it sees fail,
so the pool never hands it out again.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Connection

from db.queries import query


def _driver(conn: Connection) -> Any:
    if not conn.in_transaction():
        # What exec_driver_sql's autobegin does: the caller's commit() or its
        # `with engine().begin()` block then covers this statement.
        conn.begin()
    return conn.connection.driver_connection


def fetch(conn: Connection, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of named query `name` as dicts."""
    return fetch_sql(conn, query(name), params)


def fetch_sql(conn: Connection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of `sql` (a named query's text, or one derived from it) as dicts."""
    try:
        with _driver(conn).cursor(row_factory=dict_row) as cursor:
            cursor.execute(sql, params)
            # Not `cursor.description`: it builds a Column (and looks up its
            # type) for every column of every statement, a few percent of a
            # busy worker's CPU, only to say whether there are rows.
            result = cursor.pgresult
            return cursor.fetchall() if result is not None and result.nfields else []
    except Exception as exc:
        _invalidate_if_lost(conn, exc)
        raise


def run(conn: Connection, name: str, params: dict[str, Any]) -> None:
    """Run named query `name` for its effect."""
    try:
        with _driver(conn).cursor() as cursor:
            cursor.execute(query(name), params)
    except Exception as exc:
        _invalidate_if_lost(conn, exc)
        raise


def _invalidate_if_lost(conn: Connection, exc: Exception) -> None:
    if not isinstance(exc, psycopg.OperationalError):
        return  # the statement failed, not the connection
    driver = conn.connection.driver_connection
    if driver.closed or driver.broken:
        conn.invalidate(exc)
