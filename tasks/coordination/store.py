"""The coordination store: the few primitives every worker and relay shares state through.

Provider rate limits, the tick marker, the wake-up time, the workers'
counters and the sign-in counters are the same for every process. Each
engine (Redis, PostgreSQL, this process's memory: see
tasks.coordination.stores) implements these primitives, each one atomic on
its own store (a Lua script, one SQL statement, a lock). The decisions built
on them (tasks.coordination.rate_limit, tasks.broker.wakeup,
tasks.portal.limits, tasks.coordination.worker_metrics) are written once, over
this interface, and never ask which engine they have.

An engine that cannot reach its server raises StoreUnavailable, whatever its
driver raised: the family's one class (db.errors, re-exported here), which
the connector (db.connector) maps the drivers' errors to. Callers fall back
to this process (fallback_store) or go on without the shared state, each as
it says.

Times are on the store's own clock (Redis TIME, PostgreSQL clock_timestamp,
time.monotonic) so every process sharing a store sees the same moments;
what crosses the interface is always a duration in seconds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from sqlalchemy import Connection, Engine

# Re-exported: the engines raise it and the decisions over them catch it.
from db.errors import StoreUnavailable as StoreUnavailable

#: How the PostgreSQL engine gets its engine: called at each use, so a
#: process that re-reads its settings (tests) gets the current one.
EngineFactory = Callable[[], Engine]
#: "Any wait" (a caller's float('inf')) as every engine is given it: one finite bound.
ANY_WAIT_S = 1e9


@dataclass(frozen=True)
class Where:
    """What the settings offer to keep shared state in; each engine says whether it takes it.

    `redis_url`: the coordination Redis, or None. `database`: the engine
    factory of the process's PostgreSQL, or None to share nothing (tests).
    `timeout_s`: how long a command may take before the store is taken as
    unavailable.
    """

    redis_url: str | None
    database: EngineFactory | None
    timeout_s: float = 2.0


@dataclass(frozen=True)
class Gate:
    """A departure gate: at most `limit` entries within `window_s`.

    An entry admitted `hold_s` ahead holds its place that much longer (a
    call that is out); `gate_landed` moves it to the moment it lands. With
    `hold_s` 0 the gate is a plain sliding-window counter (sign-in limits).
    """

    limit: int
    window_s: float
    hold_s: float = 0.0


@dataclass(frozen=True)
class Spacing:
    """A GCRA's slots: one every `interval_s`, up to `tolerance_s` early (a burst)."""

    interval_s: float
    tolerance_s: float = 0.0


class CoordinationStore(ABC):
    """One engine. A new engine is one subclass, listed in tasks.coordination.stores.STORES.

    `conn`, where a primitive takes it: a database connection the caller
    already holds (a send holds one), used instead of a second one from the
    pool by an engine that keeps its state in that database; others ignore it.
    """

    #: The engine's name, as /healthz and `regnotify up` show it.
    kind: ClassVar[str]

    @classmethod
    @abstractmethod
    def open(cls, where: Where) -> CoordinationStore | None:
        """This engine over `where`, or None when `where` offers it nothing."""

    # ── Rate slots (a GCRA without queueing) ────────────────────────────────

    @abstractmethod
    def slot_reserve(self, key: str, spacing: Spacing, max_wait_s: float, *,
                     conn: Connection | None = None) -> tuple[bool, float]:
        """Take the next slot of `key` if it is at most `max_wait_s` away: (granted, wait_s).

        Not granted: nothing is taken, and wait_s says about how far the
        next slot is (so a negative `max_wait_s` peeks).
        """

    @abstractmethod
    def slot_defer(self, key: str, seconds: float) -> None:
        """No slot of `key` sooner than `seconds` from now (a provider's Retry-After)."""

    # ── The departure gate (a sliding window of entries) ────────────────────

    @abstractmethod
    def gate_depart(self, key: str, gate: Gate, token: str, *,
                    conn: Connection | None = None) -> float:
        """Admit entry `token` to `key` if it has room: 0.0; else the seconds until it may."""

    @abstractmethod
    def gate_landed(self, key: str, token: str, *, conn: Connection | None = None) -> None:
        """Entry `token` of `key` landed: it counts from this moment (unknown tokens: nothing)."""

    def reserve_and_depart(self, slot_key: str, spacing: Spacing, gate_key: str, gate: Gate,
                           token: str, *, conn: Connection | None = None
                           ) -> tuple[bool, float, bool]:
        """The next slot and, when it is now, the gate too: (granted, wait_s, departed).

        Written once here from the two primitives; an engine may answer it
        in one round trip instead, with the same outcome.
        """
        granted, wait_s = self.slot_reserve(slot_key, spacing, ANY_WAIT_S, conn=conn)
        if not granted or wait_s > 0:
            return granted, wait_s, False
        return True, 0.0, self.gate_depart(gate_key, gate, token, conn=conn) <= 0

    # ── Markers ─────────────────────────────────────────────────────────────

    @abstractmethod
    def marker_set(self, key: str, ttl_s: float, *, overwrite: bool = False) -> bool:
        """Set `key` for `ttl_s`; unless `overwrite`, only when unset (or expired). True if set."""

    @abstractmethod
    def wake_arm(self, key: str, countdown_s: float) -> bool:
        """Arm `key` `countdown_s` from now unless it is armed at or before that and still ahead.

        True when this call armed it (the caller schedules the wake-up).
        """

    @abstractmethod
    def forget(self, key: str) -> None:
        """Drop whatever `key` holds (a marker, a gate's entries, a slot, a counter group)."""

    # ── Counters ────────────────────────────────────────────────────────────

    @abstractmethod
    def counters_add(self, increments: Mapping[str, Mapping[str, int | float]]) -> None:
        """Add to counters: {group key: {field: amount}}. Ints stay whole; floats may not."""

    @abstractmethod
    def counters_read(self, key: str) -> dict[str, float]:
        """Every field of counter group `key` ({} when none was ever added)."""

