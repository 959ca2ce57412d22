"""GET /healthz: the database answers SELECT 1 and the broker answers PING, within ~2 s.

It also says where the workers share rate limits, the tick marker and the
wake-up (`coordination`: redis or postgresql) and checks that store too
when it is a Redis other than the broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from tasks.broker_redis import connect, coordination_backend, coordination_redis_url, is_redis_url
from tasks.celery_app import DEFAULT_BROKER_URL
from tasks.providers.registry import provider_report
from tasks.relay.runtime import Relay

log = logging.getLogger(__name__)


def check_database(relay: Relay) -> None:
    """Raise unless the database answers SELECT 1."""
    with relay.engine().connect() as conn:
        conn.exec_driver_sql("SELECT 1").scalar()


def check_broker(relay: Relay) -> None:
    """Raise unless the broker answers (PING for Redis, a connection otherwise)."""
    url = relay.settings.celery_broker_url or DEFAULT_BROKER_URL
    timeout = relay.settings.relay_health_timeout_s
    if is_redis_url(url):
        client = connect(url, timeout)
        try:
            client.ping()
        finally:
            client.close()
        return
    from kombu import Connection

    with Connection(url, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)


def check_coordination(relay: Relay) -> None:
    """Raise unless the coordination Redis answers PING (PostgreSQL is checked as the database)."""
    url = coordination_redis_url(relay.settings)
    if url is None or url == (relay.settings.celery_broker_url or DEFAULT_BROKER_URL):
        return  # PostgreSQL, or the broker's Redis: both have their own probe
    client = connect(url, relay.settings.relay_health_timeout_s)
    try:
        client.ping()
    finally:
        client.close()


async def _probe(name: str, check: Callable[[Relay], None], relay: Relay) -> str:
    """'ok', or why not (an exception's type, never its text: it may carry a URL)."""
    try:
        await asyncio.wait_for(run_in_threadpool(check, relay),
                               timeout=relay.settings.relay_health_timeout_s + 0.5)
    except TimeoutError:
        log.warning("healthz: %s timed out", name)
        return "timeout"
    except Exception as exc:
        log.warning("healthz: %s failed (%s)", name, type(exc).__name__)
        return f"error: {type(exc).__name__}"
    return "ok"


async def healthz(request: Request) -> JSONResponse:
    """200 when both answer, 503 naming the ones that did not."""
    relay: Relay = request.app.state.relay
    database, broker, shared = await asyncio.gather(
        _probe("database", check_database, relay),
        _probe("broker", check_broker, relay),
        _probe("coordination", check_coordination, relay),
    )
    body: dict[str, object] = {"database": database, "broker": broker}
    failed = [name for name, state in body.items() if state != "ok"]
    if shared != "ok":
        failed.append("coordination")
    # Where rate limits, the tick marker and the wake-up are shared by all workers.
    body["coordination"] = coordination_backend(relay.settings)
    if shared != "ok":
        body["coordination_error"] = shared
    listener = relay.listener
    body["listener"] = (
        "off" if listener is None else ("connected" if listener.connected else "disconnected")
    )
    body["ticker"] = relay.ticker.state()
    # Which providers a worker with these settings sends through (said, not checked).
    body["providers"] = provider_report(relay.settings)
    if failed:
        body["failed"] = failed
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)
