"""A private stack for benchmarks: PostgreSQL, Redis, wire-level providers, workers."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from db.migrations import migrate
from tasks.local.embedded_postgres import EmbeddedPostgres, free_port
from tasks.local.embedded_redis import EmbeddedRedis
from tests.wire.resend_wire import ResendWire
from tests.wire.twilio_wire import TwilioWire


@dataclass
class Stack:
    """Everything a benchmark talks to, with the environment a worker needs."""

    pg: EmbeddedPostgres
    redis: EmbeddedRedis
    twilio: TwilioWire
    resend: ResendWire
    root: Path
    env: dict[str, str] = field(default_factory=dict)


@contextmanager
def private_stack(*, latency_s: float = 0.0, durable: bool = True) -> Iterator[Stack]:
    """Start a throwaway cluster (migrated), a Redis and both wires; stop them after."""
    root = Path(tempfile.mkdtemp(prefix="regnotify-bench-"))
    settings = {} if durable else {"synchronous_commit": "off"}
    pg = EmbeddedPostgres(data_dir=root / "pg", port=free_port(), database="regnotify_bench",
                          settings=settings)
    if pg._owner is not None:
        os.chown(root, pg._owner.pw_uid, pg._owner.pw_gid)
    redis_server = EmbeddedRedis(port=free_port())
    twilio = TwilioWire(latency=latency_s, max_attempts_log=2_000_000)
    resend = ResendWire(latency=latency_s, max_attempts_log=2_000_000)
    try:
        pg.start()
        migrate(pg.url)
        # Quiet hours off: a benchmark run at night would otherwise hold every text.
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("UPDATE notification_config SET quiet_hours_channels = '{}'")
        redis_server.start()
        twilio.start()
        resend.start()
        env = {
            "DATABASE_URL": pg.url,
            "CELERY_BROKER_URL": redis_server.url,
            "SMS_PROVIDER": "twilio",
            "EMAIL_PROVIDER": "resend",
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "TWILIO_FROM_NUMBER": "+15005550006",
            "TWILIO_API_BASE_URL": twilio.url,
            "RESEND_API_KEY": resend.api_key,
            "RESEND_API_BASE_URL": resend.url,
            "EMAIL_FROM": "Bench Motors <bench@bench.test>",
            # Benchmarks measure our pipeline, not the providers' published limits.
            "TWILIO_RATE_PER_S": "100000",
            "RESEND_RATE_PER_S": "100000",
        }
        yield Stack(pg, redis_server, twilio, resend, root, env)
    finally:
        for stop in (twilio.stop, resend.stop, redis_server.stop, lambda: pg.stop("immediate")):
            # Best effort: one part failing to stop must not leave the others running.
            with contextlib.suppress(Exception):
                stop()
        shutil.rmtree(root, ignore_errors=True)
