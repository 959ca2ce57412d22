"""The errors every task retries on its own: the database or broker being briefly away."""

from __future__ import annotations

import psycopg
import redis
import sqlalchemy.exc
from kombu.exceptions import OperationalError as KombuOperationalError

#: A restart or failover of PostgreSQL or Redis; the task is idempotent, so
#: running it again later is always safe.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    # The pool had no connection free within its timeout: the database is
    # busy, not the task wrong; acking it left the delivery to the sweep.
    sqlalchemy.exc.TimeoutError,
    psycopg.OperationalError,
    redis.ConnectionError,
    redis.TimeoutError,
    KombuOperationalError,
)

#: Options for @app.task: exponential backoff with full jitter, capped at a
#: minute; after that the sweep finds the delivery again from the database.
INFRASTRUCTURE_RETRY: dict[str, object] = {
    "autoretry_for": INFRASTRUCTURE_ERRORS,
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 12,
}
