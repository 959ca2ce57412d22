"""The coordination store in this process's memory.

Shared by nothing but the threads of one process: what every other store
falls back to while it does not answer, and the store of a limiter told not
to use the database (tests). Its clock is time.monotonic.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Mapping

from sqlalchemy import Connection

from tasks.coordination.store import CoordinationStore, Gate, Spacing, Where

#: Keys kept per kind before the least recently used go (sign-in counters
#: are keyed by number and address: the fallback must not grow without end).
MAX_KEYS = 50_000


class ProcessStore(CoordinationStore):
    """Every primitive under one lock, in dicts."""

    kind = "process"

    @classmethod
    def open(cls, where: Where) -> ProcessStore:
        return cls()  # always possible: the last resort

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tat: OrderedDict[str, float] = OrderedDict()
        self._gates: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._markers: OrderedDict[str, float] = OrderedDict()
        self._counters: defaultdict[str, defaultdict[str, int | float]] = defaultdict(
            lambda: defaultdict(int))

    @staticmethod
    def _keep(table: OrderedDict, key: str, value: object) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > MAX_KEYS:
            table.popitem(last=False)

    def slot_reserve(self, key: str, spacing: Spacing, max_wait_s: float, *,
                     conn: Connection | None = None) -> tuple[bool, float]:
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat.get(key, 0.0), now)
            wait = max(0.0, tat - spacing.tolerance_s - now)
            if wait > max_wait_s:
                return False, wait
            self._keep(self._tat, key, tat + spacing.interval_s)
            return True, wait

    def slot_defer(self, key: str, seconds: float) -> None:
        with self._lock:
            target = time.monotonic() + seconds
            self._keep(self._tat, key, max(self._tat.get(key, 0.0), target))

    def gate_depart(self, key: str, gate: Gate, token: str, *,
                    conn: Connection | None = None) -> float:
        with self._lock:
            now = time.monotonic()
            log = {t: at for t, at in self._gates.get(key, {}).items() if at > now - gate.window_s}
            if len(log) < gate.limit:
                log[token] = now + gate.hold_s
                self._keep(self._gates, key, log)
                return 0.0
            self._keep(self._gates, key, log)
            return max(min(log.values()) + gate.window_s - now, 1e-6)

    def gate_landed(self, key: str, token: str, *, conn: Connection | None = None) -> None:
        with self._lock:
            log = self._gates.get(key)
            if log is not None and token in log:
                log[token] = time.monotonic()

    def marker_set(self, key: str, ttl_s: float, *, overwrite: bool = False) -> bool:
        with self._lock:
            now = time.monotonic()
            if not overwrite and self._markers.get(key, 0.0) > now:
                return False
            self._keep(self._markers, key, now + ttl_s)
            return True

    def wake_arm(self, key: str, countdown_s: float) -> bool:
        with self._lock:
            now = time.monotonic()
            target = now + countdown_s
            armed = self._markers.get(key)
            if armed is not None and now < armed <= target + 0.05:
                return False
            self._keep(self._markers, key, target)
            return True

    def forget(self, key: str) -> None:
        with self._lock:
            for table in (self._tat, self._gates, self._markers, self._counters):
                table.pop(key, None)

    def counters_add(self, increments: Mapping[str, Mapping[str, int | float]]) -> None:
        with self._lock:
            for key, fields in increments.items():
                for name, amount in fields.items():
                    self._counters[key][name] += amount

    def counters_read(self, key: str) -> dict[str, float]:
        with self._lock:
            return {name: float(n) for name, n in self._counters.get(key, {}).items()}
