"""Which coordination store a process uses: the engines, in one list, and the one chooser.

COORDINATION_REDIS_URL when set, else the broker when the broker is Redis:
Redis. Otherwise PostgreSQL (coordination_slots), which every worker and
relay already shares. This process's memory only when told to share
nothing (tests), and as the fallback while a store does not answer.

A new engine is one CoordinationStore subclass added to STORES: its `open`
says which settings it takes, and the first engine in the list that takes
them is chosen. Nothing else names an engine.
"""

from __future__ import annotations

import enum
import threading

from tasks.coordination.store import CoordinationStore, EngineFactory, Where
from tasks.coordination.store_postgres import PostgresStore
from tasks.coordination.store_process import ProcessStore
from tasks.coordination.store_redis import RedisStore, is_redis_url
from tasks.database import autocommit_engine
from tasks.settings import DEFAULT_BROKER_URL, Settings, get_settings

#: Every engine, in the order the chooser offers them the settings.
STORES: tuple[type[CoordinationStore], ...] = (RedisStore, PostgresStore, ProcessStore)


class _FromSettings(enum.Enum):
    FROM_SETTINGS = enum.auto()


#: choose_store's default `redis_url`: the one the settings name.
FROM_SETTINGS = _FromSettings.FROM_SETTINGS


def coordination_redis_url(settings: Settings | None = None, *,
                           unset_broker_is_redis: bool = True) -> str | None:
    """The Redis that holds coordination state, or None when there is none.

    `unset_broker_is_redis`: whether an unset CELERY_BROKER_URL means
    Celery's default Redis (the workers use it as their broker then), or no
    Redis (the relay: one may not be there, or be someone else's, and it
    always has PostgreSQL).
    """
    settings = settings or get_settings()
    if settings.coordination_redis_url:
        return settings.coordination_redis_url
    url = settings.celery_broker_url or (DEFAULT_BROKER_URL if unset_broker_is_redis else None)
    return url if is_redis_url(url) else None


def choose_store(settings: Settings | None = None, *,
                 redis_url: str | _FromSettings | None = FROM_SETTINGS,
                 database: bool | EngineFactory = True,
                 unset_broker_is_redis: bool = True, timeout_s: float = 2.0,
                 registry: tuple[type[CoordinationStore], ...] = STORES) -> CoordinationStore:
    """The store for these settings: the first engine of `registry` that takes them.

    `redis_url`: the coordination Redis (None: there is none), instead of
    the one the settings name. `database`: the engine factory of the
    PostgreSQL to use, True for the process's own (autocommit_engine), False
    to share nothing. `timeout_s`: a command's bound.
    """
    if redis_url is FROM_SETTINGS:
        redis_url = coordination_redis_url(settings, unset_broker_is_redis=unset_broker_is_redis)
    engine: EngineFactory | None
    if database is True:
        engine = autocommit_engine
    elif database is False:
        engine = None
    else:
        engine = database
    where = Where(redis_url=redis_url, database=engine, timeout_s=timeout_s)
    for engine_class in registry:
        store = engine_class.open(where)
        if store is not None:
            return store
    raise LookupError(f"no coordination store takes {where}")


def coordination_backend(settings: Settings | None = None) -> str:
    """Where the workers share rate limits, the tick marker and the wake-up: an engine's kind."""
    return choose_store(settings).kind


def fallback_store() -> CoordinationStore:
    """A store of this process alone, for while the chosen one does not answer."""
    return ProcessStore()


class SharedStore:
    """The store choose_store picks from the settings, made on first use and kept until reset."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._store: CoordinationStore | None = None

    def get(self) -> CoordinationStore:
        with self._lock:
            if self._store is None:
                self._store = choose_store(timeout_s=self.timeout_s)
            return self._store

    def use(self, store: CoordinationStore) -> None:
        """Use `store` until the next reset, whatever the settings say (tests)."""
        with self._lock:
            self._store = store

    def reset(self) -> None:
        """Forget the store, so the next get() reads the settings again (tests)."""
        with self._lock:
            self._store = None
