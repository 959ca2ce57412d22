"""Provider rate limits shared by every worker (Celery's rate_limit is per worker).

A GCRA in Redis: each caller reserves the next free slot and sleeps until
it, or, when the slot is too far away, leaves the message for later. One
atomic script per send; if Redis does not answer, an in-process limiter
keeps the process polite until it does.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis

from tasks.broker_redis import connect, is_redis_url

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class Reservation:
    """`granted`: sleep `wait_s` then send. Otherwise try again in about `wait_s`."""

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


class RateLimiter:
    """At most `rate_per_s` sends per second across all processes, with a small burst."""

    def __init__(self, name: str, rate_per_s: float, *, redis_url: str | None, burst: int = 1):
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.name = name
        self.interval = 1.0 / rate_per_s
        self.tolerance = self.interval * max(0, burst - 1)
        self._key = f"regnotify:ratelimit:{name}"
        self._local = _LocalGcra()
        self._redis: redis.Redis | None = None
        self._script = None
        if is_redis_url(redis_url):
            self._redis = connect(redis_url, timeout_s=2)
            self._script = self._redis.register_script(_GCRA)
        self._warned = False

    def reserve(self, max_wait_s: float) -> Reservation:
        """Reserve a slot no more than `max_wait_s` away."""
        if self._script is not None:
            try:
                granted, wait = self._script(
                    keys=[self._key], args=[self.interval, self.tolerance, max_wait_s]
                )
                self._warned = False
                return Reservation(bool(int(granted)), float(wait))
            except redis.RedisError as exc:
                if not self._warned:
                    log.warning("rate limiter %s: Redis unavailable (%s); limiting per process",
                                self.name, type(exc).__name__)
                    self._warned = True
        return self._local.reserve(self.interval, self.tolerance, max_wait_s)
