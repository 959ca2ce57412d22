"""The sign-in limits regnotify keeps, in the coordination store every relay shares.

Counters live where the workers' rate limits live: the coordination Redis
(COORDINATION_REDIS_URL, else the broker when it is Redis), else PostgreSQL
(the table coordination_slots). So replicas count together and a restart
forgets nothing. If the store does not answer, a counter in this process
keeps the relay careful until it does. Keys hold a keyed hash of the number
or address, never the number itself.

The client's address is the TCP peer, or, when the peer is a trusted proxy
(FORWARDED_ALLOW_IPS), the last address in X-Forwarded-For that is not one
(with `*`, the last address: the only one a proxy surely wrote).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable

import redis
import sqlalchemy.exc
from sqlalchemy import Engine

from db import signin_limits
from tasks.coordination.broker_redis import connect, is_redis_url
from tasks.settings import Settings

log = logging.getLogger(__name__)

#: A code lives this long (the console's own codes).
CODE_TTL_S = 600
#: Checks of a number's codes within CODE_TTL_S: a resend does not start
#: the count again (only a good code does), so a new code buys no guesses.
CHECKS_PER_CODE = 5
CHECKS_WINDOW_S = CODE_TTL_S
#: Sends per number, and per client IP, in a sliding window.
SENDS_PER_NUMBER = 3
SENDS_PER_NUMBER_WINDOW_S = 600
SENDS_PER_IP = 10
SENDS_PER_IP_WINDOW_S = 3600
#: Entries kept per kind in the in-process fallback before the oldest go.
MAX_KEYS = 50_000
#: One hit in this many also prunes sign-in rows idle for a day (PostgreSQL).
PRUNE_ONE_IN = 200

# A sliding window in a sorted set: drop what left the window, refuse when
# full, else log this hit. Redis's clock, so every relay counts alike.
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return 1
"""


class _LocalWindows:
    """The in-process fallback: at most `limit` events per key within `window_s`."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, window_s: float) -> bool:
        now = time.monotonic()
        with self._lock:
            hits = self._hits.pop(key, None) or deque()
            while hits and hits[0] <= now - window_s:
                hits.popleft()
            allowed = len(hits) < limit
            if allowed:
                hits.append(now)
            self._hits[key] = hits
            while len(self._hits) > MAX_KEYS:
                self._hits.pop(next(iter(self._hits)))
            return allowed

    def clear(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)


class SigninCounters:
    """Sliding-window counters shared by every relay (Redis, else PostgreSQL)."""

    def __init__(self, settings: Settings, engine: Callable[[], Engine], salt: bytes) -> None:
        self._engine = engine
        self._salt = salt
        self._local = _LocalWindows()
        self._redis: redis.Redis | None = None
        url = store_redis_url(settings)
        if url is not None:
            self._redis = connect(url, timeout_s=2)
            self._hit_script = self._redis.register_script(_HIT)
        self._warned = False

    @property
    def backend(self) -> str:
        return "redis" if self._redis is not None else "postgresql"

    def key(self, kind: str, value: str) -> str:
        digest = hmac.new(self._salt, f"{kind}|{value}".encode(), hashlib.sha256).hexdigest()
        return f"regnotify:signin:{kind}:{digest[:32]}"

    def hit(self, kind: str, value: str, limit: int, window_s: float) -> bool:
        """Count one event for (kind, value) unless the window is full (then False)."""
        key = self.key(kind, value)
        try:
            if self._redis is not None:
                allowed = bool(int(self._hit_script(keys=[key], args=[
                    limit, window_s, uuid.uuid4().hex])))
            else:
                with self._engine().begin() as conn:
                    allowed = signin_limits.hit(conn, key, limit, window_s)
                    if random.randrange(PRUNE_ONE_IN) == 0:
                        signin_limits.prune(conn)
            self._warned = False
            return allowed
        except (redis.RedisError, sqlalchemy.exc.SQLAlchemyError) as exc:
            self._warn(exc)
        return self._local.hit(key, limit, window_s)

    def clear(self, kind: str, value: str) -> None:
        key = self.key(kind, value)
        self._local.clear(key)
        try:
            if self._redis is not None:
                self._redis.delete(key)
            else:
                with self._engine().begin() as conn:
                    signin_limits.clear(conn, key)
        except (redis.RedisError, sqlalchemy.exc.SQLAlchemyError) as exc:
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            log.warning("portal: sign-in counters' %s store unavailable (%s); counting in this "
                        "process until it answers", self.backend, type(exc).__name__)
            self._warned = True


def store_redis_url(settings: Settings) -> str | None:
    """The Redis the relay's sign-in counters use, or None for PostgreSQL.

    As the workers choose, except that an unset broker means PostgreSQL (the
    relay always has it) rather than a Redis on the default port that may
    not be there, or be someone else's.
    """
    if settings.coordination_redis_url:
        return settings.coordination_redis_url
    url = settings.celery_broker_url
    return url if is_redis_url(url) else None


# ── The client's address ─────────────────────────────────────────────────────

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(spec: str) -> list[Network] | None:
    """FORWARDED_ALLOW_IPS as networks; None means '*' (every peer is a proxy)."""
    nets: list[Network] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        if item == "*":
            return None
        nets.append(ipaddress.ip_network(item, strict=False))
    return nets


def _trusted(address: str, nets: list[Network] | None) -> bool:
    if nets is None:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in nets)


def client_address(peer: str | None, forwarded_for: str | None,
                   nets: list[Network] | None) -> str:
    """The customer's address: the peer, unless a trusted proxy says whom it forwards.

    X-Forwarded-For is read right to left, each trusted proxy appending the
    address it got the request from; the first untrusted one is the client (a
    client's own X-Forwarded-For values sit further left and are ignored).
    """
    peer = peer or "unknown"
    if not forwarded_for or not _trusted(peer, nets):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    if not hops:
        return peer
    if nets is None:
        # '*': every peer is taken for a proxy, so the one address a proxy
        # surely wrote is the last; anything left of it the client may have.
        return hops[-1]
    for hop in reversed(hops):
        if not _trusted(hop, nets):
            return hop
    return hops[0]
