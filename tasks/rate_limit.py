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
import uuid
from collections import deque
from dataclasses import dataclass

import redis
import sqlalchemy.exc

from db import coordination
from tasks.broker_redis import connect, is_redis_url
from tasks.database import autocommit_engine

log = logging.getLogger(__name__)

#: Slots are spaced this much wider than 1/rate, the same as the departure
#: gate's window, so in steady flow the gate never has to hold a call back.
SLOT_MARGIN = 1.08

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


# The gate right before a call: a log of the departures of the last
# ARGV[2] seconds; admit (and log) this one when fewer than ARGV[1] are in it,
# else answer how long until the oldest leaves the window.
_GATE = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, tostring(now) .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""

#: The departure gate's window: a second, and a little more for the time
#: between the gate and the request's arrival at the provider, which counts
#: arrivals (a busy worker was measured to add up to ~60 ms). Costs 8 % of
#: the limit; a 429 costs a whole Retry-After.
GATE_WINDOW_S = 1.08


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


class _LocalGate:
    """The departure gate in process memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: deque[float] = deque()

    def try_depart(self, limit: int, window: float) -> float:
        with self._lock:
            now = time.monotonic()
            while self._log and self._log[0] <= now - window:
                self._log.popleft()
            if len(self._log) < limit:
                self._log.append(now)
                return 0.0
            return self._log[0] + window - now


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
        self._gate_key = f"regnotify:ratelimit:{name}:sent"
        self.limit_per_window = max(1, int(rate_per_s))
        self._local = _LocalGcra()
        self._local_gate = _LocalGate()
        self._redis: redis.Redis | None = None
        self._use_database = use_database and not is_redis_url(redis_url)
        if is_redis_url(redis_url):
            self._redis = connect(redis_url, timeout_s=2)
            self._script = self._redis.register_script(_GCRA)
            self._defer_script = self._redis.register_script(_DEFER)
            self._gate_script = self._redis.register_script(_GATE)
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

    def depart(self) -> None:
        """Block until this call may leave: fewer than the limit left in the last second.

        The slots already space the calls; this gate catches the ones that
        leave late (a busy thread, a slow render) and would crowd a second.
        """
        while True:
            wait = self._try_depart()
            if wait <= 0:
                return
            time.sleep(min(wait, 1.0) + 0.001)

    def _try_depart(self) -> float:
        try:
            if self._redis is not None:
                return float(self._gate_script(
                    keys=[self._gate_key],
                    args=[self.limit_per_window, GATE_WINDOW_S, uuid.uuid4().hex[:8]],
                ))
            if self._use_database:
                with autocommit_engine().connect() as conn:
                    return coordination.gate(conn, self._gate_key, self.limit_per_window,
                                             GATE_WINDOW_S)
        except (redis.RedisError, sqlalchemy.exc.SQLAlchemyError) as exc:
            self._warn(exc)
        return self._local_gate.try_depart(self.limit_per_window, GATE_WINDOW_S)

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            log.warning("rate limiter %s: %s unavailable (%s); limiting per process",
                        self.name, self.backend, type(exc).__name__)
            self._warned = True
