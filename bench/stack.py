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

from db.install.migrations import migrate
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


#: Set for the bench process and its workers: settings come from the
#: environment the bench gives them, never from a .env or .regnotify/up.env.
IGNORE_ENV_FILES = "REGNOTIFY_IGNORE_ENV_FILES"


def isolate_environment() -> None:
    """Forget the user's regnotify and Celery settings, so only the private stack is used.

    Celery reads CELERY_BROKER_URL from the environment before any app
    setting, so a user's broker would take the bench's pings and tasks; the
    same goes for DATABASE_URL, .env and the rest. The workers inherit this
    cleaned environment plus the stack's own.
    """
    from tasks.database import reset_engine
    from tasks.settings import Settings, get_settings

    names = {name.upper() for name in Settings.model_fields}
    for key in list(os.environ):
        if key.upper() in names or key.upper().startswith("CELERY_"):
            del os.environ[key]
    os.environ[IGNORE_ENV_FILES] = "1"
    get_settings.cache_clear()
    reset_engine()


@contextmanager
def private_stack(*, latency_s: float = 0.0, durable: bool = True,
                  statements: bool = False) -> Iterator[Stack]:
    """Start a throwaway cluster (migrated), a Redis and both wires; stop them after.

    `statements`: the cluster records pg_stat_statements (extension created),
    in place of pg_cron, which a benchmark does not need (bench.send_profile).
    """
    root = Path(tempfile.mkdtemp(prefix="regnotify-bench-"))
    settings = {} if durable else {"synchronous_commit": "off"}
    if statements:
        settings["shared_preload_libraries"] = "pg_stat_statements"
    pg = EmbeddedPostgres(data_dir=root / "pg", port=free_port(), database="regnotify_bench",
                          settings=settings, cron=not statements)
    pg.chown(root)
    redis_server = EmbeddedRedis(port=free_port())
    twilio = TwilioWire(latency=latency_s, max_attempts_log=2_000_000)
    resend = ResendWire(latency=latency_s, max_attempts_log=2_000_000)
    try:
        pg.start()
        migrate(pg.url)
        # Quiet hours off: a benchmark run at night would otherwise hold every text.
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("UPDATE notification_config SET quiet_hours_channels = '{}'")
            if statements:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        redis_server.start()
        twilio.start()
        resend.start()
        env = {
            IGNORE_ENV_FILES: "1",
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
