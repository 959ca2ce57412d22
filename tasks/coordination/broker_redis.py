"""The coordination names the other roles import: where the shared state lives, Redis clients.

The choice itself is tasks.coordination.stores.choose_store; the Redis
helpers belong to the Redis engine (tasks.coordination.store_redis).
"""

from __future__ import annotations

from tasks.coordination.store_redis import connect, is_redis_url
from tasks.coordination.stores import coordination_backend, coordination_redis_url

__all__ = ["connect", "coordination_backend", "coordination_redis_url", "is_redis_url"]
