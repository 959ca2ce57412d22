"""Provider rate limits shared by every worker (Celery's rate_limit is per worker).

A GCRA without burst: each caller reserves the next free slot, one every
1/rate seconds, so no window of one second ever holds more than `rate`
sends. A slot may lie in the future: the caller waits for it (sleeping, or
re-published for that time), which is why waiting is never a failed attempt.

The slot state lives in the coordination Redis, or in PostgreSQL when there
is none (see tasks.broker_redis). If the store does not answer, an
in-process limiter keeps the process polite until it does.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis
import sqlalchemy.exc

from db import coordination
from tasks.broker_redis import connect, is_redis_url
from tasks.database import autocommit_engine

log = logging.getLogger(__name__)

#: Slots are spaced this much wider than 1/rate, so a send that leaves a few
#: milliseconds late (thread scheduling, network) still finds the provider's
#: one-second window with room. Costs 3 % of throughput; a 429 costs more.
SLOT_MARGIN = 1.03

_GCRA = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
if wait > max_wait then return {0, tostring(wait)} end
local new_tat = tat + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, tostring(wait)}
"""

# Push the next free slot to at least ARGV[1] seconds from now.
_DEFER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local target = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat and tat >= target then return 0 end
redis.call('SET', KEYS[1], tostring(target), 'PX', math.ceil((target - now) * 1000) + 1000)
return 1
"""


@dataclass(frozen=True)
class Reservation:
    """`granted`: the slot is `wait_s` away; send then. Otherwise none within reach."""

    granted: bool
    wait_s: float


class _LocalGcra:
    """The same algorithm in process memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tat = 0.0

    def reserve(self, interval: float, tolerance: float, max_wait: float) -> Reservation:
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat, now)
            wait = max(0.0, tat - tolerance - now)
            if wait > max_wait:
                return Reservation(False, wait)
            self._tat = tat + interval
            return Reservation(True, wait)

    def defer(self, seconds: float) -> None:
        with self._lock:
            self._tat = max(self._tat, time.monotonic() + seconds)


class RateLimiter:
    """At most `rate_per_s` sends in any one second, across all processes.

    `redis_url`: the coordination Redis; None keeps the slots in PostgreSQL
    (`use_database=False` keeps them in this process only, for tests).
    """

    def __init__(self, name: str, rate_per_s: float, *, redis_url: str | None,
                 burst: int = 1, use_database: bool = True):
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.name = name
        self.rate_per_s = rate_per_s
        self.interval = SLOT_MARGIN / rate_per_s
        self.tolerance = self.interval * max(0, burst - 1)
        self._key = f"regnotify:ratelimit:{name}"
        self._local = _LocalGcra()
        self._redis: redis.Redis | None = None
        self._use_database = use_database and not is_redis_url(redis_url)
        if is_redis_url(redis_url):
            self._redis = connect(redis_url, timeout_s=2)
            self._script = self._redis.register_script(_GCRA)
            self._defer_script = self._redis.register_script(_DEFER)
        self._warned = False

    @property
    def backend(self) -> str:
        """Where the slots are kept: redis, postgresql or process."""
        if self._redis is not None:
            return "redis"
        return "postgresql" if self._use_database else "process"

    def reserve(self, max_wait_s: float) -> Reservation:
        """Reserve a slot no more than `max_wait_s` away (float('inf'): any)."""
        max_wait = min(max_wait_s, 1e9)
        try:
            if self._redis is not None:
                granted, wait = self._script(
                    keys=[self._key], args=[self.interval, self.tolerance, max_wait]
                )
                self._warned = False
                return Reservation(bool(int(granted)), float(wait))
            if self._use_database:
                with autocommit_engine().connect() as conn:
                    ok, wait_s = coordination.rate_reserve(
                        conn, self._key, interval=self.interval, tolerance=self.tolerance,
                        max_wait=max_wait,
                    )
                self._warned = False
                return Reservation(ok, wait_s)
        except (redis.RedisError, sqlalchemy.exc.SQLAlchemyError) as exc:
            self._warn(exc)
        return self._local.reserve(self.interval, self.tolerance, max_wait)

    def defer(self, seconds: float) -> None:
        """The provider said 'not before `seconds`': no slot for anyone sooner."""
        self._local.defer(seconds)
        try:
            if self._redis is not None:
                self._defer_script(keys=[self._key], args=[seconds])
            elif self._use_database:
                with autocommit_engine().connect() as conn:
                    coordination.rate_defer(conn, self._key, seconds)
        except (redis.RedisError, sqlalchemy.exc.SQLAlchemyError) as exc:
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            log.warning("rate limiter %s: %s unavailable (%s); limiting per process",
                        self.name, self.backend, type(exc).__name__)
            self._warned = True
