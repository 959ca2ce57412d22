"""The process's database engine, created on first use from DATABASE_URL."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from db.connection import make_engine
from tasks.settings import get_settings

_lock = threading.Lock()
_engine: Engine | None = None


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
                _engine = make_engine(settings.database_url, pool_size=settings.worker_concurrency)
    return _engine


def reset_engine() -> None:
    """Drop the engine (after a fork, or when tests change DATABASE_URL)."""
    global _engine
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None
