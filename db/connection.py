"""Connections: a SQLAlchemy 2 engine on psycopg 3, and raw psycopg where needed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url

from db.connector import check_database_url, family_errors, redacted
from db.errors import DatabaseError, DatabaseNotMigrated, DatabaseUnavailable

__all__ = ["PING_AFTER_IDLE_S", "check_database_url", "check_ready", "libpq_url",
           "make_engine", "raw_connection", "redacted", "sqlalchemy_url"]

#: The workers' engine pings a pooled connection only when it sat idle longer
#: than this. A hot pool hands a connection back within milliseconds; pinging
#: each of those cost a round trip per statement, a tenth of a send's worker
#: CPU. A server restart takes longer than this, so every connection that
#: lived through one is still checked; the rare one caught by a restart
#: mid-use fails its statement, SQLAlchemy recycles the whole pool and the
#: task's infrastructure retry runs it again.
PING_AFTER_IDLE_S = 1.0


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


def make_engine(
    database_url: str,
    *,
    pool_size: int = 5,
    ping_after_idle_s: float | None = None,
    **kwargs: Any,
) -> Engine:
    """Create the engine; connections are checked before use so a restarted server is survived.

    By default every checkout is pinged. With `ping_after_idle_s` only a
    connection idle for longer than that is (see PING_AFTER_IDLE_S).
    """
    new = create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=ping_after_idle_s is None,
        pool_recycle=1800,
        **kwargs,
    )
    if ping_after_idle_s is not None:
        _ping_when_idle(new, ping_after_idle_s)
    return new


def _ping_when_idle(engine: Engine, after_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _fresh(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _returned(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle = time.monotonic() - record.info.get("idle_since", 0.0)
        if idle <= after_s:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool discards this connection and checks out a new one.
            raise exc.DisconnectionError(str(error)) from error


def check_ready(database_url: str, *, connect_timeout_s: int = 5) -> None:
    """Raise a DatabaseUnavailable (or DatabaseNotMigrated) unless the database can serve us."""
    check_database_url(database_url)
    try:
        with family_errors(database_url=database_url):
            conn = psycopg.connect(libpq_url(database_url), connect_timeout=connect_timeout_s)
            try:
                # The queue is the first table every command touches.
                row = conn.execute("SELECT to_regclass('public.notification_queue')").fetchone()
                where = (f'database "{conn.info.dbname}" on {conn.info.host}:{conn.info.port} '
                         f'as user "{conn.info.user}"')
            finally:
                conn.close()
    except DatabaseUnavailable:
        raise
    except DatabaseError as exc:
        # Neither unreachable nor unmigrated: the URL's options or the login.
        raise DatabaseUnavailable(
            f"database {redacted(database_url)} refused us ({type(exc.__cause__).__name__}): "
            "check DATABASE_URL") from None
    if row is None or row[0] is None:
        # Named in full: an empty DATABASE_URL ("postgresql://") reaches the
        # machine's own server, which nobody should migrate by mistake.
        raise DatabaseNotMigrated(
            f"{where} has no regnotify tables: if that is the database you meant, run "
            "`regnotify migrate` first; if not, check DATABASE_URL")


@contextmanager
def raw_connection(database_url: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A plain psycopg connection with dict rows, closed on exit."""
    conn = psycopg.connect(libpq_url(database_url), autocommit=autocommit, row_factory=dict_row)
    try:
        yield conn
    finally:
        conn.close()
