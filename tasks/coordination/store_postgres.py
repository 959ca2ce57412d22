"""The coordination store in PostgreSQL: rows of coordination_slots, one statement a primitive.

For a RabbitMQ broker with no Redis named: every worker and relay already
shares the database. The statements are in sql/queries/coordination.sql
(through db/coordination.py); each is atomic on its own, its row lock
serialising the processes that share a name.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from sqlalchemy import Connection

from db import coordination
from db.connector import family_errors
from db.errors import DatabaseError
from tasks.coordination.store import (
    CoordinationStore,
    EngineFactory,
    Gate,
    Spacing,
    StoreUnavailable,
    Where,
)

#: One gate entry in this many also drops gates idle for a day.
PRUNE_ONE_IN = 200
#: Gate entries of this process still out, before the oldest are forgotten
#: (an entry whose caller never lands frees itself after its hold anyway).
MAX_OUT = 10_000
#: Counter rows are named group + this + field.
COUNTER_SEPARATOR = "#"


class PostgresStore(CoordinationStore):
    """coordination_slots, reached through `engine` (called at each use)."""

    kind = "postgresql"

    @classmethod
    def open(cls, where: Where) -> PostgresStore | None:
        return cls(where.database) if where.database is not None else None

    def __init__(self, engine: EngineFactory) -> None:
        self._engine = engine
        # The table logs a gate's entries as times, not names: the time an
        # entry was logged at names it until it lands.
        self._lock = threading.Lock()
        self._logged_at: OrderedDict[str, float] = OrderedDict()

    @contextmanager
    def _db(self, conn: Connection | None = None) -> Iterator[Connection]:
        """The caller's connection, or one from the pool (committed when done).

        Any database error (as the connector names it) means the store is
        unavailable to the caller, who falls back as it says.
        """
        try:
            with family_errors():
                if conn is not None:
                    yield conn
                    return
                with self._engine().begin() as own:
                    yield own
        except DatabaseError as exc:
            raise StoreUnavailable(f"coordination in PostgreSQL: {exc}") from exc

    def slot_reserve(self, key: str, spacing: Spacing, max_wait_s: float, *,
                     conn: Connection | None = None) -> tuple[bool, float]:
        with self._db(conn) as db:
            return coordination.rate_reserve(db, key, interval=spacing.interval_s,
                                             tolerance=spacing.tolerance_s, max_wait=max_wait_s)

    def slot_defer(self, key: str, seconds: float) -> None:
        with self._db() as db:
            coordination.rate_defer(db, key, seconds)

    def gate_depart(self, key: str, gate: Gate, token: str, *,
                    conn: Connection | None = None) -> float:
        with self._db(conn) as db:
            wait, logged_at = coordination.gate(db, key, gate.limit, gate.window_s,
                                                hold_s=gate.hold_s)
            if random.randrange(PRUNE_ONE_IN) == 0:
                coordination.gate_prune(db)
        if logged_at is not None:
            with self._lock:
                self._logged_at[token] = logged_at
                while len(self._logged_at) > MAX_OUT:
                    self._logged_at.popitem(last=False)
        return wait

    def gate_landed(self, key: str, token: str, *, conn: Connection | None = None) -> None:
        with self._lock:
            logged_at = self._logged_at.pop(token, None)
        if logged_at is None:
            return  # not admitted here (another store's, or already landed)
        with self._db(conn) as db:
            coordination.gate_landed(db, key, logged_at)

    def marker_set(self, key: str, ttl_s: float, *, overwrite: bool = False) -> bool:
        with self._db() as db:
            if overwrite:
                coordination.marker_set(db, key, ttl_s)
                return True
            return coordination.marker_set_if_absent(db, key, ttl_s)

    def wake_arm(self, key: str, countdown_s: float) -> bool:
        with self._db() as db:
            return coordination.wake_arm(db, key, countdown_s)

    def forget(self, key: str) -> None:
        with self._db() as db:
            coordination.forget(db, key, key + COUNTER_SEPARATOR)

    def counters_add(self, increments: Mapping[str, Mapping[str, int | float]]) -> None:
        amounts = {f"{key}{COUNTER_SEPARATOR}{name}": float(amount)
                   for key, fields in increments.items() for name, amount in fields.items()}
        if amounts:
            with self._db() as db:
                coordination.counters_add(db, amounts)

    def counters_read(self, key: str) -> dict[str, float]:
        with self._db() as db:
            return coordination.counters_read(db, key + COUNTER_SEPARATOR)

