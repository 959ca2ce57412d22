"""The errors every task retries on its own: the database or broker being briefly away."""

from __future__ import annotations

from db.connector import BRIEFLY_AWAY

#: A restart or failover of PostgreSQL or Redis; the task is idempotent, so
#: running it again later is always safe. The list is the connector's.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = BRIEFLY_AWAY

#: Options for @app.task: exponential backoff with full jitter, capped at a
#: minute; after that the sweep finds the delivery again from the database.
INFRASTRUCTURE_RETRY: dict[str, object] = {
    "autoretry_for": INFRASTRUCTURE_ERRORS,
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 12,
}
