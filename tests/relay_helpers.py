"""Shared pieces of the relay tests: settings, a live broker, signed requests, delivery rows.

Test modules load this as a plugin (`pytest_plugins = ["tests.relay_helpers"]`)
so the fixtures below are available to them. Plain helpers, so no assertion
rewriting (it would warn, as the modules import this one first): PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
import redis
from starlette.testclient import TestClient
from svix.webhooks import Webhook
from twilio.request_validator import RequestValidator

from tasks.local.embedded_redis import EmbeddedRedis
from tasks.relay import create_app
from tasks.settings import Settings
from tests.conftest import reset_process_state
from tests.pg import insert_row, new_registration

RELAY_TOKEN = "relay-test-token-0123456789"
TWILIO_AUTH_TOKEN = "twilio-test-auth-token-abcdef"
PUBLIC_URL = "https://relay.dealer.test"
SVIX_SECRET = "whsec_" + base64.b64encode(b"regnotify-relay-test-secret-32b!").decode()


def relay_settings(**overrides: Any) -> Settings:
    """Settings for a relay under test: no .env, no background threads unless asked."""
    values: dict[str, Any] = {
        "relay_token": RELAY_TOKEN,
        "relay_listen": False,
        "relay_self_tick": "off",
        "relay_public_url": PUBLIC_URL,
        "twilio_auth_token": TWILIO_AUTH_TOKEN,
        "resend_webhook_secret": SVIX_SECRET,
        "relay_health_timeout_s": 1.0,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; return its value or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


# ── Broker ───────────────────────────────────────────────────────────────────


def queued(redis_url: str, queue: str = "notifications") -> int:
    """How many messages wait in a Celery queue on the test Redis."""
    return int(redis.Redis.from_url(redis_url).llen(queue))


def queued_task_names(redis_url: str, queue: str = "notifications") -> list[str]:
    """The task names of the messages waiting in a queue."""
    raw = redis.Redis.from_url(redis_url).lrange(queue, 0, -1)
    return [json.loads(m)["headers"]["task"] for m in raw]


def flush_broker(redis_url: str) -> None:
    """Empty the test Redis: queues and the tick coalescing marker."""
    redis.Redis.from_url(redis_url).flushdb()


@contextmanager
def celery_broker(url: str, database_url: str) -> Iterator[str]:
    """Point the process's Celery app, tick coalescing and settings at `url` for a while."""
    from tasks.broker import wakeup
    from tasks.broker.app import app

    saved_env = {k: os.environ.get(k) for k in ("CELERY_BROKER_URL", "DATABASE_URL")}
    saved_url = app.conf.broker_url
    os.environ["CELERY_BROKER_URL"] = url
    os.environ["DATABASE_URL"] = database_url
    reset_process_state()
    app.conf.broker_url = url
    _drop_celery_pools(app)
    wakeup.reset_client()
    try:
        yield url
    finally:
        _drop_celery_pools(app)
        app.conf.broker_url = saved_url
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_process_state()
        wakeup.reset_client()


def _drop_celery_pools(app: Any) -> None:
    # Celery caches connection and producer pools on first use, bound to the
    # broker URL of that moment.
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture()
def live_broker(redis_server: EmbeddedRedis, clean_db: str) -> Iterator[str]:
    """The process's Celery app publishing to the (emptied) test Redis for real; yields its URL."""
    flush_broker(redis_server.url)
    with celery_broker(redis_server.url, clean_db) as url:
        yield url
    # Leave no queued runs or tick marker for the next test's worker to find.
    flush_broker(redis_server.url)


# ── Apps and clients ─────────────────────────────────────────────────────────


@pytest.fixture()
def relay_client(clean_db: str, redis_server: EmbeddedRedis) -> Iterator[Callable[..., TestClient]]:
    """Build a relay (without its lifespan) from overrides and get a TestClient for it."""
    made: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        overrides.setdefault("database_url", clean_db)
        overrides.setdefault("celery_broker_url", redis_server.url)
        local_only = overrides.pop("local_only", False)
        client = TestClient(create_app(relay_settings(**overrides), local_only=local_only))
        made.append(client)
        return client

    yield make
    for client in made:
        client.app.state.relay.stop()  # type: ignore[attr-defined]
        client.close()


# ── Signed provider requests ─────────────────────────────────────────────────


def twilio_post(
    client: TestClient | httpx.Client,
    path: str,
    params: dict[str, str],
    *,
    token: str = TWILIO_AUTH_TOKEN,
    public_url: str = PUBLIC_URL,
    query: str = "",
    signature: str | None = None,
) -> httpx.Response:
    """POST a form the way Twilio does, signed with `token` over public_url + path."""
    suffix = f"?{query}" if query else ""
    if signature is None:
        signature = RequestValidator(token).compute_signature(f"{public_url}{path}{suffix}",
                                                              params)
    return client.post(f"{path}{suffix}", data=params,
                       headers={"X-Twilio-Signature": signature})


def svix_headers(
    payload: str, msg_id: str, *, secret: str = SVIX_SECRET, at: datetime | None = None
) -> dict[str, str]:
    """The headers Svix sends with `payload`, signed with `secret` at `at` (now)."""
    at = at or datetime.now(UTC)
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(at.timestamp())),
        "svix-signature": Webhook(secret).sign(msg_id, at, payload),
        "content-type": "application/json",
    }


def resend_event(kind: str, email_id: str, **data: Any) -> str:
    """A Resend webhook body as Resend serialises it."""
    return json.dumps({
        "type": kind,
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "data": {
            "email_id": email_id,
            "from": "Lone Star Auto <registrations@lonestar.test>",
            "to": ["dana@example.com"],
            "subject": "Your registration",
            "created_at": datetime.now(UTC).isoformat(),
            **data,
        },
    })


def resend_post(
    client: TestClient | httpx.Client, payload: str, msg_id: str, **kwargs: Any
) -> httpx.Response:
    """POST a signed Resend event."""
    return client.post("/webhooks/resend", content=payload.encode(),
                       headers=svix_headers(payload, msg_id, **kwargs))


# ── Delivery rows ────────────────────────────────────────────────────────────


def new_delivery(
    conn: psycopg.Connection[dict[str, Any]],
    *,
    channel: str,
    provider_message_id: str | None,
    status: str = "sent",
    registration_id: str | None = None,
    **fields: Any,
) -> int:
    """A registration_notifications row as the send task leaves it after the provider accepted."""
    if registration_id is None:
        registration_id = new_registration(conn)
    values = {
        "registration_id": registration_id,
        "channel": channel,
        "recipient": "+15551230001" if channel == "sms" else "dana@example.com",
        "status": status,
        "provider_message_id": provider_message_id,
        "new_stage": "submitted_to_dmv",
        "attempts": 1,
        **fields,
    }
    return int(insert_row(conn, "registration_notifications", values))


def delivery(conn: psycopg.Connection[dict[str, Any]], delivery_id: int) -> dict[str, Any]:
    """One delivery row."""
    row = conn.execute("SELECT * FROM registration_notifications WHERE id = %s",
                       (delivery_id,)).fetchone()
    assert row is not None
    return row
