"""The process's database engine, created on first use from DATABASE_URL.

db.connection.make_engine builds it; this module holds the one per process.
"""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from db.connection import PING_AFTER_IDLE_S, make_engine
from db.errors import DatabaseUnavailable
from tasks.settings import get_settings

_lock = threading.Lock()
_engine: Engine | None = None
#: (the engine it was derived from, the autocommit view of it)
_autocommit: tuple[Engine, Engine] | None = None
#: Threads of this process that run tasks, when a worker said so (see
#: tasks.worker.worker_budget); else WORKER_CONCURRENCY.
_threads: int | None = None


def size_pool_for(threads: int) -> None:
    """Size the pool for `threads` task threads (an engine of another size is replaced)."""
    global _threads
    if threads == _threads:
        return
    _threads = threads
    if _engine is not None and pool_size() != _engine.pool.size():  # type: ignore[attr-defined]
        reset_engine()


def pool_size() -> int:
    """Connections the pool keeps: one per task thread."""
    return _threads if _threads is not None else get_settings().worker_concurrency


def engine() -> Engine:
    """The shared engine; its pool is sized for the worker's concurrency."""
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                settings = get_settings()
                if not settings.database_url:
                    raise DatabaseUnavailable(
                        "no database: set DATABASE_URL or pass --database-url")
                # Each worker thread holds at most one connection at a time.
                _engine = make_engine(settings.database_url,
                                      pool_size=pool_size(),
                                      ping_after_idle_s=PING_AFTER_IDLE_S)
    return _engine


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
