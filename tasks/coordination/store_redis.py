"""The coordination store in a Redis: each primitive one command or one Lua script.

Scripts read the server's clock (TIME), so every process sharing the Redis
sees the same moments whatever its own clock says. Each command runs inside
db.connector.family_errors, which says Redis's errors as StoreUnavailable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeGuard

import redis
from sqlalchemy import Connection

from db.connector import family_errors
from tasks.coordination.store import ANY_WAIT_S, CoordinationStore, Gate, Spacing, Where

_SCHEMES = ("redis://", "rediss://", "unix://")


def is_redis_url(url: str | None) -> TypeGuard[str]:
    """Whether `url` names a Redis server (the broker may be RabbitMQ instead)."""
    return url is not None and url.startswith(_SCHEMES)


def connect(url: str, timeout_s: float) -> redis.Redis:
    """A client whose connects and commands give up after `timeout_s`."""
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


# What the scripts share: the server's clock, the GCRA and the gate.
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

-- The gate's log `key` holds the entries within the last `window`
-- seconds. Admit `member` when fewer than `limit` are in it, logged `hold`
-- seconds ahead, and answer '0'; else how long until the oldest leaves the
-- window (never '0').
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

# The gate: ARGV limit, window, member, hold.
_GATE = _LUA + """
return gate(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), clock())
"""

# The slot and, when it is now, the gate, in one round trip (a send in
# steady flow reserves and departs at once). KEYS: the slot, the gate's
# log; ARGV: _GCRA's three, then _GATE's four. Answers {granted, wait,
# gate}: gate '0' admitted, '-1' not tried (the slot is later, or none),
# else the gate's wait. The same outcome as CoordinationStore.reserve_and_depart.
_RESERVE_AND_DEPART = _LUA + """
local now = clock()
local granted, wait = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
                           now)
if granted == 0 or wait > 0 then return {granted, tostring(wait), '-1'} end
return {1, '0', gate(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]),
                     now)}
"""

# The entry ARGV[1] landed: log it at this moment (only if it is there).
_LANDED = _LUA + """
return redis.call('ZADD', KEYS[1], 'XX', clock(), ARGV[1])
"""

# Arm a wake-up ARGV[1] seconds from now unless one is armed at or before
# it and still ahead. Returns 1 when the caller must schedule the run.
_ARM = _LUA + """
local now = clock()
local target = now + tonumber(ARGV[1])
local armed = tonumber(redis.call('GET', KEYS[1]))
if armed and armed > now and armed <= target + 0.05 then return 0 end
local ttl = math.ceil((target - now) * 1000) + 5000
if ttl < 5000 then ttl = 5000 end
redis.call('SET', KEYS[1], tostring(target), 'PX', ttl)
return 1
"""


class RedisStore(CoordinationStore):
    """The coordination Redis (COORDINATION_REDIS_URL, else the broker's)."""

    kind = "redis"

    @classmethod
    def open(cls, where: Where) -> RedisStore | None:
        return cls(where.redis_url, where.timeout_s) if is_redis_url(where.redis_url) else None

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.client = connect(url, timeout_s)
        self._gcra = self.client.register_script(_GCRA)
        self._defer = self.client.register_script(_DEFER)
        self._gate = self.client.register_script(_GATE)
        self._landed = self.client.register_script(_LANDED)
        self._reserve_depart = self.client.register_script(_RESERVE_AND_DEPART)
        self._arm = self.client.register_script(_ARM)

    def slot_reserve(self, key: str, spacing: Spacing, max_wait_s: float, *,
                     conn: Connection | None = None) -> tuple[bool, float]:
        with family_errors():
            granted, wait = self._gcra(
                keys=[key], args=[spacing.interval_s, spacing.tolerance_s, max_wait_s])
        return bool(int(granted)), float(wait)

    def slot_defer(self, key: str, seconds: float) -> None:
        with family_errors():
            self._defer(keys=[key], args=[seconds])

    def gate_depart(self, key: str, gate: Gate, token: str, *,
                    conn: Connection | None = None) -> float:
        with family_errors():
            return float(self._gate(keys=[key],
                                    args=[gate.limit, gate.window_s, token, gate.hold_s]))

    def gate_landed(self, key: str, token: str, *, conn: Connection | None = None) -> None:
        with family_errors():
            self._landed(keys=[key], args=[token])

    def reserve_and_depart(self, slot_key: str, spacing: Spacing, gate_key: str, gate: Gate,
                           token: str, *, conn: Connection | None = None
                           ) -> tuple[bool, float, bool]:
        with family_errors():
            granted, wait, admitted = self._reserve_depart(
                keys=[slot_key, gate_key],
                args=[spacing.interval_s, spacing.tolerance_s, ANY_WAIT_S, gate.limit,
                      gate.window_s, token, gate.hold_s])
        return bool(int(granted)), float(wait), admitted == b"0"

    def marker_set(self, key: str, ttl_s: float, *, overwrite: bool = False) -> bool:
        with family_errors():
            return bool(self.client.set(key, "1", nx=not overwrite,
                                        px=max(1, math.ceil(ttl_s * 1000))))

    def wake_arm(self, key: str, countdown_s: float) -> bool:
        with family_errors():
            return bool(int(self._arm(keys=[key], args=[countdown_s])))

    def forget(self, key: str) -> None:
        with family_errors():
            self.client.delete(key)

    def counters_add(self, increments: Mapping[str, Mapping[str, int | float]]) -> None:
        with family_errors():
            pipe = self.client.pipeline(transaction=False)
            for key, fields in increments.items():
                for name, amount in fields.items():
                    # HINCRBY refuses floats, and a field HINCRBYFLOAT wrote.
                    if isinstance(amount, int):
                        pipe.hincrby(key, name, amount)
                    else:
                        pipe.hincrbyfloat(key, name, amount)
            pipe.execute()

    def counters_read(self, key: str) -> dict[str, float]:
        with family_errors():
            raw = self.client.hgetall(key)
        return {k.decode(): float(v) for k, v in raw.items()}
