"""The process's database engine, created on first use from DATABASE_URL."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc

from db.connection import sqlalchemy_url
from tasks.settings import get_settings

#: A pooled connection idle for longer than this is pinged before it is used.
#: A hot pool hands a connection back within milliseconds; pinging each of
#: those cost a round trip per statement, a tenth of a send's worker CPU.
#: A server restart takes longer than this, so every connection that lived
#: through one is still checked; the rare one caught by a restart mid-use
#: fails its statement, SQLAlchemy recycles the whole pool and the task's
#: infrastructure retry runs it again.
PING_AFTER_IDLE_S = 1.0

_lock = threading.Lock()
_engine: Engine | None = None
#: (the engine it was derived from, the autocommit view of it)
_autocommit: tuple[Engine, Engine] | None = None


class DatabaseNotConfigured(RuntimeError):
    """DATABASE_URL is not set."""


def engine() -> Engine:
    """The shared engine; its pool is sized for the worker's concurrency."""
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                settings = get_settings()
                if not settings.database_url:
                    raise DatabaseNotConfigured("DATABASE_URL is not set")
                # Each worker thread holds at most one connection at a time.
                _engine = make_pooled_engine(settings.database_url,
                                             pool_size=settings.worker_concurrency)
    return _engine


def make_pooled_engine(database_url: str, *, pool_size: int) -> Engine:
    """db.connection.make_engine's engine, pinging only connections that sat idle.

    The same pool settings; only the pre-ping differs (see PING_AFTER_IDLE_S).
    """
    new = create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
    )

    @event.listens_for(new, "connect")
    def _fresh(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(new, "checkin")
    def _returned(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(new, "checkout")
    def _check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle = time.monotonic() - record.info.get("idle_since", 0.0)
        if idle <= PING_AFTER_IDLE_S:
            return
        try:
            new.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool discards this connection and checks out a new one.
            raise exc.DisconnectionError(str(error)) from error

    return new


def autocommit_engine() -> Engine:
    """The same pool, with each statement committed on its own.

    For steps that are a single statement (which PostgreSQL runs atomically
    anyway): psycopg would otherwise send BEGIN and COMMIT as round trips of
    their own, tripling the database round trips of a send.
    """
    global _autocommit
    base = engine()
    current = _autocommit
    if current is None or current[0] is not base:
        current = (base, base.execution_options(isolation_level="AUTOCOMMIT"))
        _autocommit = current
    return current[1]


def reset_engine() -> None:
    """Drop the engine (after a fork, or when tests change DATABASE_URL)."""
    global _engine, _autocommit
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None
        _autocommit = None
