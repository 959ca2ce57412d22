"""Redis clients for the broker's Redis (wake-up keys, rate limits, worker counters)."""

from __future__ import annotations

import threading
from typing import TypeGuard

import redis

from tasks.celery_app import broker_url

_SCHEMES = ("redis://", "rediss://", "unix://")


def is_redis_url(url: str | None) -> TypeGuard[str]:
    """Whether `url` names a Redis server (the broker may be RabbitMQ instead)."""
    return url is not None and url.startswith(_SCHEMES)


def connect(url: str, timeout_s: float) -> redis.Redis:
    """A client whose connects and commands give up after `timeout_s`."""
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


class BrokerRedis:
    """One client for the broker's Redis, made on first use; None when the broker is not Redis."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None

    def get(self) -> redis.Redis | None:
        """The client (the broker URL is read when it is first made)."""
        with self._lock:
            if self._client is None:
                url = broker_url()
                if not is_redis_url(url):
                    return None
                self._client = connect(url, self.timeout_s)
            return self._client

    def reset(self) -> None:
        """Forget the client, so the next get() reads the broker URL again (tests)."""
        with self._lock:
            self._client = None
