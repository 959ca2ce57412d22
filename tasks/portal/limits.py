"""The sign-in limits regnotify keeps itself, where the code's sender keeps none.

Counters live in the relay's memory: a relay that restarts forgets them, and
with several relay replicas each counts on its own (put sign-in behind one,
or divide the limits). Codes of the console sender live here too.
"""

from __future__ import annotations

import threading
import time
from collections import deque

#: A code lives this long and is checked at most this often.
CODE_TTL_S = 600
CHECKS_PER_CODE = 5
#: Sends per number, and per client IP, in a sliding window.
SENDS_PER_NUMBER = 3
SENDS_PER_NUMBER_WINDOW_S = 600
SENDS_PER_IP = 10
SENDS_PER_IP_WINDOW_S = 3600
#: Entries kept per kind before the oldest are forgotten (a flood of numbers
#: cannot grow the relay's memory without bound).
MAX_KEYS = 50_000


class SlidingWindow:
    """At most `limit` events per key within `window_s` seconds."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Count one event for `key`, unless the window is full (then False)."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.pop(key, None) or deque()
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            allowed = len(hits) < self.limit
            if allowed:
                hits.append(now)
            self._hits[key] = hits
            while len(self._hits) > MAX_KEYS:
                self._hits.pop(next(iter(self._hits)))
            return allowed


class CheckCounter:
    """Checks of the code last sent to a number: at most CHECKS_PER_CODE."""

    def __init__(self, limit: int = CHECKS_PER_CODE) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def new_code(self, phone: str) -> None:
        with self._lock:
            self._counts[phone] = 0
            while len(self._counts) > MAX_KEYS:
                self._counts.pop(next(iter(self._counts)))

    def allow(self, phone: str) -> bool | None:
        """Count one check: False once the code has had its checks, None when none is out."""
        with self._lock:
            used = self._counts.get(phone)
            if used is None:
                return None
            if used >= self.limit:
                return False
            self._counts[phone] = used + 1
            return True

    def done(self, phone: str) -> None:
        with self._lock:
            self._counts.pop(phone, None)
