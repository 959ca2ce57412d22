"""GET /healthz: the database answers SELECT 1 and the broker answers PING, within ~2 s.

The probes run on connections the relay keeps (the API's pool, one Redis
client per URL), and their answer is reused for up to PROBE_MAX_AGE_S: a
load balancer polling every worker, or fifty callers at once, cost the
database and the broker at most one probe each per second per process.
The listener's and the ticker's states are read fresh on every call.

It also says where the workers share rate limits, the tick marker and the
wake-up (`coordination`: redis or postgresql) and checks that store too
when it is a Redis other than the broker.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from tasks.coordination.store_redis import is_redis_url
from tasks.coordination.stores import coordination_backend, coordination_redis_url
from tasks.providers.registry import provider_report
from tasks.relay.leader import LISTENING_ELSEWHERE_SQL, LISTENING_KEY
from tasks.relay.runtime import Relay
from tasks.settings import DEFAULT_BROKER_URL

log = logging.getLogger(__name__)


#: How old a probe's answer may be and still be given.
PROBE_MAX_AGE_S = 1.0


async def check_database(relay: Relay) -> None:
    """Raise unless the database answers SELECT 1 (on a connection of the API's pool).

    A standby worker asks instead whether the leader's LISTEN is in place.
    """
    async with relay.caller_pool().connection() as conn:
        leadership = relay.leadership
        if leadership is None or leadership.leading:
            await conn.execute("SELECT 1")
            return
        cur = await conn.execute(LISTENING_ELSEWHERE_SQL, {
            "key": LISTENING_KEY, "group": leadership.group})
        row = await cur.fetchone()
        relay.listening_elsewhere = bool(row and row[0])


def check_broker(relay: Relay) -> None:
    """Raise unless the broker answers (PING for Redis, a connection otherwise)."""
    url = relay.settings.celery_broker_url or DEFAULT_BROKER_URL
    timeout = relay.settings.relay_health_timeout_s
    if is_redis_url(url):
        relay.redis_client(url, timeout).ping()
        return
    from kombu import Connection

    with Connection(url, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)


def check_coordination(relay: Relay) -> None:
    """Raise unless the coordination Redis answers PING (PostgreSQL is checked as the database)."""
    url = coordination_redis_url(relay.settings)
    if url is None or url == (relay.settings.celery_broker_url or DEFAULT_BROKER_URL):
        return  # PostgreSQL, or the broker's Redis: both have their own probe
    relay.redis_client(url, relay.settings.relay_health_timeout_s).ping()


async def _probe(name: str, check: Callable[[Relay], Any], relay: Relay) -> str:
    """'ok', or why not (an exception's type, never its text: it may carry a URL)."""
    work = check(relay) if inspect.iscoroutinefunction(check) else run_in_threadpool(check, relay)
    try:
        await asyncio.wait_for(work, timeout=relay.settings.relay_health_timeout_s + 0.5)
    except TimeoutError:
        log.warning("healthz: %s timed out", name)
        return "timeout"
    except Exception as exc:
        log.warning("healthz: %s failed (%s)", name, type(exc).__name__)
        return f"error: {type(exc).__name__}"
    return "ok"


class ProbeCache:
    """The last probes' answers and when they were taken; one round of probes at a time."""

    def __init__(self) -> None:
        self.taken_at = -PROBE_MAX_AGE_S
        self.answers: tuple[str, str, str] = ("", "", "")
        self._running: tuple[asyncio.AbstractEventLoop, asyncio.Task] | None = None

    async def answers_for(self, relay: Relay) -> tuple[str, str, str]:
        if time.monotonic() - self.taken_at < PROBE_MAX_AGE_S:
            return self.answers
        loop = asyncio.get_running_loop()
        running = self._running
        if running is None or running[0] is not loop or running[1].done():
            running = (loop, loop.create_task(self._probe_all(relay)))
            self._running = running
        # shield: one caller hanging up must not cancel the round the others wait for.
        return await asyncio.shield(running[1])

    async def _probe_all(self, relay: Relay) -> tuple[str, str, str]:
        started = time.monotonic()
        database, broker, shared = await asyncio.gather(
            _probe("database", check_database, relay),
            _probe("broker", check_broker, relay),
            _probe("coordination", check_coordination, relay),
        )
        self.answers, self.taken_at = (database, broker, shared), started
        return self.answers


async def healthz(request: Request) -> JSONResponse:
    """200 when both answer, 503 naming the ones that did not."""
    relay: Relay = request.app.state.relay
    cache: ProbeCache | None = getattr(request.app.state, "health_probes", None)
    if cache is None:
        cache = request.app.state.health_probes = ProbeCache()
    database, broker, shared = await cache.answers_for(relay)
    body: dict[str, object] = {"database": database, "broker": broker}
    failed = [name for name, state in body.items() if state != "ok"]
    if shared != "ok":
        failed.append("coordination")
    # Where rate limits, the tick marker and the wake-up are shared by all workers.
    body["coordination"] = coordination_backend(relay.settings)
    if shared != "ok":
        body["coordination_error"] = shared
    listener = relay.listener
    leadership = relay.leadership
    # A standby worker speaks for the relay: the leader's LISTEN (as of the last probe).
    connected = listener is not None and (listener.connected or (
        leadership is not None and not leadership.leading and relay.listening_elsewhere))
    body["listener"] = (
        "off" if listener is None else ("connected" if connected else "disconnected")
    )
    if leadership is not None:
        body["worker"] = "leader" if leadership.leading else "standby"
    body["ticker"] = relay.ticker.state()
    # Which providers a worker with these settings sends through (said, not checked).
    body["providers"] = provider_report(relay.settings)
    if failed:
        body["failed"] = failed
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)
