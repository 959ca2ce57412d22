"""Test helpers that talk to the throwaway cluster as different database roles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from db.connection import libpq_url


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[dict[str, Any]]:
    """A dict-row psycopg connection to the test database."""
    return psycopg.connect(libpq_url(url), autocommit=autocommit, row_factory=dict_row)


@contextmanager
def as_role(
    url: str, role: str, claims: dict[str, Any] | None = None
) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A transaction running as `role` with PostgREST-style JWT claims, rolled back after."""
    with connect(url, autocommit=False) as conn:
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)",
                     (json.dumps(claims or {}),))
        conn.execute(f"SET LOCAL ROLE {role}")
        try:
            yield conn
        finally:
            conn.rollback()


def insert_row(conn: psycopg.Connection, table: str, values: dict[str, Any]) -> Any:
    """INSERT one row of `values` (column -> value) into `table`; returns its id."""
    cols = ", ".join(values)
    params = ", ".join(f"%({k})s" for k in values)
    row = conn.execute(
        f"INSERT INTO {table} ({cols}) VALUES ({params}) RETURNING id", values
    ).fetchone()
    assert row is not None
    return row["id"] if isinstance(row, dict) else row[0]


def new_registration(conn: psycopg.Connection, **fields: Any) -> str:
    """Insert a registration with sensible defaults and return its id."""
    values = {
        "customer_name": "Dana Driver",
        "customer_phone": "+15551230001",
        "customer_email": "dana@example.com",
        "vehicle_make": "Honda",
        "vehicle_model": "Civic",
        "vehicle_year": 2019,
        **fields,
    }
    return str(insert_row(conn, "registrations", values))
