"""Provider rate limits shared by every worker (Celery's rate_limit is per worker).

A GCRA without burst: each caller reserves the next free slot, one every
1/rate seconds, so no window of one second ever holds more than `rate`
sends. A slot may lie in the future: the caller waits for it (sleeping, or
re-published for that time), which is why waiting is never a failed attempt.

Slots are when calls should leave; the provider counts when they arrive. A
departure gate closes the gap: a call holds a place in a shared log from the
moment it leaves until its answer is back, and is then logged at that
moment. The provider saw the call between the two, so any calls it saw
within one second are all in our log within one second of the last of them
to leave: however late a busy thread or the network made them, no second at
the provider holds more than the limit.

The slot state lives in the coordination Redis, or in PostgreSQL when there
is none (see tasks.coordination.broker_redis). If the store does not answer, an
in-process limiter keeps the process polite until it does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import redis
import sqlalchemy.exc
from sqlalchemy import Connection

from db import coordination
from tasks.coordination.broker_redis import connect, is_redis_url
from tasks.database import autocommit_engine

log = logging.getLogger(__name__)

#: Slots are spaced this much wider than 1/rate: the departure gate's
#: window and a quick answer's time, which a call also holds its place for,
#: so in steady flow the gate seldom has to hold a call back.
SLOT_MARGIN = 1.08
#: "Any wait" (a caller's float('inf')) as every store is given it: one finite bound.
ANY_WAIT_S = 1e9

# What the scripts share: the server's clock, the GCRA and the departure gate.
_LUA = """
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Reserve the next slot of `key`, `interval` apart: {granted, wait}.
local function gcra(key, interval, tolerance, max_wait, now)
  local tat = tonumber(redis.call('GET', key))
  if not tat or tat < now then tat = now end
  local wait = tat - tolerance - now
  if wait < 0 then wait = 0 end
  if wait > max_wait then return 0, wait end
  local new_tat = tat + interval
  redis.call('SET', key, tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
  return 1, wait
end

-- The gate's log `key` holds the calls out or answered within the last
-- `window` seconds. Admit `member` when fewer than `limit` are in it,
-- logged `hold` seconds ahead (it is out: see _LANDED), and answer '0';
-- else how long until the oldest leaves the window (never '0').
local function gate(key, limit, window, member, hold, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) < limit then
    redis.call('ZADD', key, now + hold, member)
    redis.call('PEXPIRE', key, math.ceil((window + hold) * 1000) + 1000)
    return '0'
  end
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return tostring(math.max(tonumber(oldest[2]) + window - now, 0.000001))
end
"""

# A slot: ARGV interval, tolerance, max_wait. Answers {granted, wait}.
_GCRA = _LUA + """
local granted, wait = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
                           clock())
return {granted, tostring(wait)}
"""

# Push the next free slot to at least ARGV[1] seconds from now.
_DEFER = _LUA + """
local now = clock()
local target = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat and tat >= target then return 0 end
redis.call('SET', KEYS[1], tostring(target), 'PX', math.ceil((target - now) * 1000) + 1000)
return 1
"""

# The gate right before a call: ARGV limit, window, member, hold.
_GATE = _LUA + """
return gate(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), clock())
"""

# The slot and, when it is now, the gate in the same round trip: a send in
# steady flow reserves its slot and departs at once, so one script call
# serves both. KEYS: the slot, the gate's log; ARGV: _GCRA's three, then
# _GATE's four. Answers {granted, wait, gate}: gate '0' admitted, '-1' not
# tried (the slot is later, or none), else the gate's wait.
_RESERVE_AND_DEPART = _LUA + """
local now = clock()
local granted, wait = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
                           now)
if granted == 0 or wait > 0 then return {granted, tostring(wait), '-1'} end
return {1, '0', gate(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]),
                     now)}
"""

# The call's answer is back: log member ARGV[1] at this moment.
_LANDED = _LUA + """
return redis.call('ZADD', KEYS[1], 'XX', clock(), ARGV[1])
"""

#: The departure gate's window. A second is enough, because a call is logged
#: when its answer is back, after the provider counted it; the rest allows
#: for clocks that tick at slightly different rates.
GATE_WINDOW_S = 1.02
#: How long past the provider timeout a call out holds its place if its
#: worker dies before the answer: the gate frees it then.
HOLD_PAST_TIMEOUT_S = 5.0


def _database(conn: Connection | None) -> contextlib.AbstractContextManager[Connection]:
    """The caller's connection (a send holds one: it never needs a second), or a pooled one."""
    if conn is not None:
        return nullcontext(conn)
    return autocommit_engine().connect()


@dataclass(frozen=True)
class Reservation:
    """`granted`: the slot is `wait_s` away; send then. Otherwise none within reach.

    `departed`: the gate already admitted a call under this token (see
    RateLimiter.reserve_and_depart); pass it to `call`, which then does not
    ask the gate again and logs the answer under it.
    """

    granted: bool
    wait_s: float
    departed: str | None = None


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
        self._log: dict[str, float] = {}

    def try_depart(self, limit: int, window: float, token: str, hold: float) -> float:
        with self._lock:
            now = time.monotonic()
            self._log = {k: at for k, at in self._log.items() if at > now - window}
            if len(self._log) < limit:
                self._log[token] = now + hold
                return 0.0
            return min(self._log.values()) + window - now

    def landed(self, token: str) -> None:
        with self._lock:
            if token in self._log:
                self._log[token] = time.monotonic()


class RateLimiter:
    """At most `rate_per_s` sends in any one second, across all processes.

    `redis_url`: the coordination Redis; None keeps the slots in PostgreSQL
    (`use_database=False` keeps them in this process only, for tests).
    `call_timeout_s`: the longest a provider call can be out (its connect and
    read timeouts together: tasks.sending.delivery_flow.call_bound_s).
    """

    def __init__(self, name: str, rate_per_s: float, *, redis_url: str | None,
                 burst: int = 1, use_database: bool = True, call_timeout_s: float = 10.0):
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.name = name
        self.hold_s = call_timeout_s + HOLD_PAST_TIMEOUT_S
        self.rate_per_s = rate_per_s
        self.interval = SLOT_MARGIN / rate_per_s
        self.tolerance = self.interval * max(0, burst - 1)
        self._key = f"regnotify:ratelimit:{name}"
        self._gate_key = f"regnotify:ratelimit:{name}:sent"
        self.limit_per_window = max(1, int(rate_per_s))
        self._local = _LocalGcra()
        self._local_gate = _LocalGate()
        self._logged_at: dict[str, float] = {}
        self._redis: redis.Redis | None = None
        self._use_database = use_database and not is_redis_url(redis_url)
        if is_redis_url(redis_url):
            self._redis = connect(redis_url, timeout_s=2)
            self._script = self._redis.register_script(_GCRA)
            self._defer_script = self._redis.register_script(_DEFER)
            self._gate_script = self._redis.register_script(_GATE)
            self._landed_script = self._redis.register_script(_LANDED)
            self._reserve_depart_script = self._redis.register_script(_RESERVE_AND_DEPART)
        self._warned = False

    @property
    def backend(self) -> str:
        """Where the slots are kept: redis, postgresql or process."""
        if self._redis is not None:
            return "redis"
        return "postgresql" if self._use_database else "process"

    def reserve(self, max_wait_s: float, *, conn: Connection | None = None) -> Reservation:
        """Reserve a slot no more than `max_wait_s` away (float('inf'): any).

        `conn`: an autocommit connection the caller holds, used for the
        PostgreSQL store instead of a second one from the pool.
        """
        max_wait = min(max_wait_s, ANY_WAIT_S)
        try:
            if self._redis is not None:
                granted, wait = self._script(
                    keys=[self._key], args=[self.interval, self.tolerance, max_wait]
                )
                self._warned = False
                return Reservation(bool(int(granted)), float(wait))
            if self._use_database:
                with _database(conn) as db:
                    ok, wait_s = coordination.rate_reserve(
                        db, self._key, interval=self.interval, tolerance=self.tolerance,
                        max_wait=max_wait,
                    )
                self._warned = False
                return Reservation(ok, wait_s)
        except (redis.RedisError, sqlalchemy.exc.SQLAlchemyError) as exc:
            self._warn(exc)
        return self._local.reserve(self.interval, self.tolerance, max_wait)

    def reserve_and_depart(self, *, conn: Connection | None = None) -> Reservation:
        """Reserve the next slot and, when it is now, pass the gate in the same round trip.

        The caller must then make the call with `call(departed=...)` right
        away: from here the call holds its place in the gate's log. Only the
        Redis store combines the two; the others reserve as `reserve` does.
        """
        if self._redis is None:
            return self.reserve(math.inf, conn=conn)
        token = uuid.uuid4().hex
        try:
            granted, wait, gate = self._reserve_depart_script(
                keys=[self._key, self._gate_key],
                args=[self.interval, self.tolerance, ANY_WAIT_S, self.limit_per_window,
                      GATE_WINDOW_S, token, self.hold_s],
            )
            self._warned = False
        except redis.RedisError as exc:
            self._warn(exc)
            return self._local.reserve(self.interval, self.tolerance, ANY_WAIT_S)
        return Reservation(bool(int(granted)), float(wait), token if gate == b"0" else None)

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

    @contextmanager
    def call(self, departed: str | None = None, *,
             conn: Connection | None = None) -> Iterator[None]:
        """Around one provider call: wait at the gate, hold a place while out, log the answer.

        The slots already space the calls; the gate catches the ones that
        leave late (a busy thread, a slow render) and would crowd a second.
        `departed`: the token the gate admitted in `reserve_and_depart`.
        `conn`: the caller's autocommit connection, for the PostgreSQL store.
        """
        token = departed or uuid.uuid4().hex
        while departed is None:
            wait = self._try_depart(token, conn)
            if wait <= 0:
                break
            time.sleep(min(wait, 1.0) + 0.001)
        try:
            yield
        finally:
            self._landed(token, conn)

    def _try_depart(self, token: str, conn: Connection | None = None) -> float:
        try:
            if self._redis is not None:
                return float(self._gate_script(
                    keys=[self._gate_key],
                    args=[self.limit_per_window, GATE_WINDOW_S, token, self.hold_s],
                ))
            if self._use_database:
                with _database(conn) as db:
                    wait, logged_at = coordination.gate(
                        db, self._gate_key, self.limit_per_window, GATE_WINDOW_S,
                        hold_s=self.hold_s)
                if logged_at is not None:
                    # The table logs times, not names: the time names the call.
                    self._logged_at[token] = logged_at
                return wait
        except (redis.RedisError, sqlalchemy.exc.SQLAlchemyError) as exc:
            self._warn(exc)
        return self._local_gate.try_depart(self.limit_per_window, GATE_WINDOW_S, token,
                                           self.hold_s)

    def _landed(self, token: str, conn: Connection | None = None) -> None:
        # Each store is told: the call was admitted by whichever answered.
        self._local_gate.landed(token)
        try:
            if self._redis is not None:
                self._landed_script(keys=[self._gate_key], args=[token])
            elif self._use_database and token in self._logged_at:
                with _database(conn) as db:
                    coordination.gate_landed(db, self._gate_key, self._logged_at.pop(token))
        except (redis.RedisError, sqlalchemy.exc.SQLAlchemyError) as exc:
            # Its place is freed when the hold runs out; the call is done.
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            log.warning("rate limiter %s: %s unavailable (%s); limiting per process",
                        self.name, self.backend, type(exc).__name__)
            self._warned = True
