"""When to start a queue run: coalesced ticks, and one wake-up at the next send_after.

Only the keys and the decisions live here; tasks/worker/queue_tick.py enqueues the
runs (`request_tick`, `arm_wakeup`). Both use small keys in the coordination
Redis (tasks.coordination.broker_redis), or rows of coordination_slots in PostgreSQL when
there is no such Redis, so every worker shares them whatever the broker. They
only save work: if the keys are lost, the next tick or the cron safety net
runs anyway.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import redis
import sqlalchemy.exc

from db import coordination
from tasks.coordination.broker_redis import BrokerRedis
from tasks.database import autocommit_engine
from tasks.worker.app import app

log = logging.getLogger(__name__)

PENDING_KEY = "regnotify:tick:pending"
WAKE_KEY = "regnotify:tick:wake_at"

#: A pending marker outlives a lost message by at most this long. Short,
#: because a marker can stand for nothing: a SET that timed out while the
#: coordination Redis's host was cut off still lands when the network heals
#: (TCP retransmits what the closed socket held, up to half a minute later),
#: after the run it was for. Ticks coalesced into such a marker queue nothing
#: until it expires; a run that really waits longer than this costs one spare run.
PENDING_TTL_S = 15
#: Wake-ups further out are re-armed by the run they start; a countdown is
#: an unacked message in Redis, so it must stay well under the visibility timeout.
MAX_WAKE_DELAY_S = 60.0

# Arm a wake-up at ARGV[1] (epoch seconds) unless one is armed at or before
# it and still ahead. Returns 1 when the caller must schedule the run.
_ARM = """
local target = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local armed = tonumber(redis.call('GET', KEYS[1]))
if armed and armed > now and armed <= target + 0.05 then return 0 end
local ttl = math.ceil((target - now) * 1000) + 5000
if ttl < 5000 then ttl = 5000 end
redis.call('SET', KEYS[1], tostring(target), 'PX', ttl)
return 1
"""


@dataclass(frozen=True)
class TickRequest:
    """The outcome of asking for a run: a new task id, or coalesced into one already queued."""

    task_id: str | None
    coalesced: bool


_broker = BrokerRedis(timeout_s=2)

# Set when this process cannot tell whether the marker stands for a queued
# run: setting it timed out (the SET may still land once the network heals:
# TCP delivers what the socket held) or the publish after it failed. The next
# tick then sets the marker over whatever is there and queues a run, instead
# of coalescing into a run that may not exist for up to PENDING_TTL_S.
_marker_uncertain = threading.Event()


def reset_client() -> None:
    """Forget the Redis client (tests that change the broker)."""
    _broker.reset()
    _marker_uncertain.clear()


def should_enqueue_tick() -> bool:
    """Mark a run as waiting to start; False when one already is (coalesce into it)."""
    client = _broker.get()
    overwrite = _marker_uncertain.is_set()
    try:
        if client is not None:
            if not client.set(PENDING_KEY, "1", nx=not overwrite, ex=PENDING_TTL_S):
                return False
        else:
            with autocommit_engine().connect() as conn:
                if overwrite:
                    coordination.marker_clear(conn, PENDING_KEY)
                if not coordination.marker_set_if_absent(conn, PENDING_KEY, PENDING_TTL_S):
                    return False
    except (redis.RedisError, sqlalchemy.exc.SQLAlchemyError) as exc:
        # Without the marker we may enqueue a spare run; that is harmless.
        log.warning("tick coalescing unavailable: %s", type(exc).__name__)
        _marker_uncertain.set()
    return True


def tick_queued() -> None:
    """The run a tick asked for is in the broker: the marker stands for it again."""
    _marker_uncertain.clear()


def tick_not_queued() -> None:
    """The publish after should_enqueue_tick() failed: no run stands behind the marker."""
    _marker_uncertain.set()
    run_started()


def run_started() -> None:
    """Called as a run starts: ticks from now on must start another run."""
    client = _broker.get()
    try:
        if client is not None:
            client.delete(PENDING_KEY)
        else:
            with autocommit_engine().connect() as conn:
                coordination.marker_clear(conn, PENDING_KEY)
    except (redis.RedisError, sqlalchemy.exc.SQLAlchemyError) as exc:
        log.warning("could not clear the tick marker: %s", type(exc).__name__)


def claim_wakeup(seconds_until_due: float | None) -> float | None:
    """The countdown for one run at the next send_after, or None when none is needed.

    None when nothing is pending, when tasks run inline (an inline "countdown"
    would run at once and recurse), or when a wake-up is already armed at or
    before that time.
    """
    if seconds_until_due is None:
        return None
    if app.conf.task_always_eager:
        return None
    # A floor, so rows another claimer holds cannot spin us in a tight loop.
    countdown = min(max(seconds_until_due, 0.05), MAX_WAKE_DELAY_S)
    client = _broker.get()
    try:
        if client is not None:
            now_s, now_us = client.time()
            target = now_s + now_us / 1e6 + countdown
            if not int(client.eval(_ARM, 1, WAKE_KEY, repr(target))):
                return None
        else:
            with autocommit_engine().connect() as conn:
                if not coordination.wake_arm(conn, WAKE_KEY, countdown):
                    return None
    except (redis.RedisError, sqlalchemy.exc.SQLAlchemyError) as exc:
        log.warning("wake-up dedup unavailable: %s", type(exc).__name__)
    return countdown
