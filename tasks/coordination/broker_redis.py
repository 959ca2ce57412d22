"""Where the workers share their small coordination state, and Redis clients for it.

Provider rate limits, the tick marker, the wake-up time and the worker
counters must be the same for every worker process. They live in a Redis:
COORDINATION_REDIS_URL when set, else the broker when the broker is Redis.
With a RabbitMQ broker and no such Redis they live in PostgreSQL (the table
coordination_slots), which every worker already shares.
"""

from __future__ import annotations

import threading
from typing import Literal, TypeGuard

import redis

from tasks.settings import Settings, get_settings
from tasks.worker.app import DEFAULT_BROKER_URL

_SCHEMES = ("redis://", "rediss://", "unix://")

Backend = Literal["redis", "postgresql"]


def is_redis_url(url: str | None) -> TypeGuard[str]:
    """Whether `url` names a Redis server (the broker may be RabbitMQ instead)."""
    return url is not None and url.startswith(_SCHEMES)


def coordination_redis_url(settings: Settings | None = None) -> str | None:
    """The Redis that holds coordination state, or None when PostgreSQL holds it."""
    settings = settings or get_settings()
    if settings.coordination_redis_url:
        return settings.coordination_redis_url
    url = settings.celery_broker_url or DEFAULT_BROKER_URL
    return url if is_redis_url(url) else None


def coordination_backend(settings: Settings | None = None) -> Backend:
    """'redis' or 'postgresql': where rate limits, tick marker and wake-up are shared."""
    return "redis" if coordination_redis_url(settings) else "postgresql"


def connect(url: str, timeout_s: float) -> redis.Redis:
    """A client whose connects and commands give up after `timeout_s`."""
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


class BrokerRedis:
    """One client for the coordination Redis, made on first use; None when there is none.

    (The name is historical: it is the broker's Redis only when no
    COORDINATION_REDIS_URL is set.)
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None

    def get(self) -> redis.Redis | None:
        """The client (the URL is read when it is first made)."""
        with self._lock:
            if self._client is None:
                url = coordination_redis_url()
                if url is None:
                    return None
                self._client = connect(url, self.timeout_s)
            return self._client

    def reset(self) -> None:
        """Forget the client, so the next get() reads the URL again (tests)."""
        with self._lock:
            self._client = None
