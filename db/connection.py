"""Connections: a SQLAlchemy 2 engine on psycopg 3, and raw psycopg where needed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url


def sqlalchemy_url(database_url: str) -> str:
    """Turn a libpq-style URL into one SQLAlchemy drives with psycopg 3."""
    url = make_url(database_url)
    if url.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def libpq_url(database_url: str) -> str:
    """Turn any of our accepted URL spellings into one psycopg.connect() takes."""
    url = make_url(database_url)
    if url.drivername != "postgresql":
        url = url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def redacted(database_url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    return make_url(database_url).render_as_string(hide_password=True)


def make_engine(database_url: str, *, pool_size: int = 5, **kwargs: Any) -> Engine:
    """Create the engine; connections are checked before use so a restarted server is survived."""
    return create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        **kwargs,
    )


@contextmanager
def raw_connection(database_url: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A plain psycopg connection with dict rows, closed on exit."""
    conn = psycopg.connect(libpq_url(database_url), autocommit=autocommit, row_factory=dict_row)
    try:
        yield conn
    finally:
        conn.close()
