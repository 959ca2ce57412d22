"""The relay's ASGI app: POST /tick, /healthz, /metrics, /openapi.json, /docs, webhooks, /api,
/portal, /staff."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route

from tasks.portal import ROUTES as PORTAL_ROUTES
from tasks.portal.openapi import PATHS as PORTAL_PATHS
from tasks.portal.state import build_portal, with_session_key
from tasks.relay import (
    api_me,
    api_registrations,
    health,
    metrics,
    openapi,
    resend_webhooks,
    tick_endpoint,
    twilio_inbound,
    twilio_webhooks,
)
from tasks.relay.body_limit import BodyLimitMiddleware
from tasks.relay.runtime import Relay, TickFunction
from tasks.settings import Settings, get_settings
from tasks.staff import ROUTES as STAFF_ROUTES
from tasks.staff.openapi import PATHS as STAFF_PATHS

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    local_only: bool = False,
    tick: TickFunction | None = None,
    group: int | None = None,
    loopback: bool = False,
) -> Starlette:
    """Build the relay for these settings (the process's by default).

    Raises RelayConfigError without RELAY_TOKEN unless `local_only`. `tick`
    replaces tasks.broker.wakeup.request_tick (tests that observe ticks). The
    listener and the own ticker start with the app's lifespan. `group`: this
    app is one of several workers, which elect the one that runs those
    (tasks/relay/leader.py). `loopback`: the relay binds a loopback address
    only, so the customer page may print sign-in codes on its output and sign
    sessions with a key of this process when SESSION_SECRET is unset.
    """
    # One settings object for the process: the relay and the page share it.
    settings = with_session_key(settings or get_settings(), loopback=loopback)
    relay = Relay(settings, local_only=local_only, tick=tick, group=group)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await relay.open_pools()
        relay.start()
        try:
            yield
        finally:
            relay.stop()
            await relay.close_pools()

    routes = [
        Route("/tick", tick_endpoint.tick, methods=["POST"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/metrics", metrics.metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi.openapi_endpoint, methods=["GET"]),
        Route("/docs", openapi.docs_endpoint, methods=["GET"]),
        Route(twilio_webhooks.STATUS_PATH, twilio_webhooks.status_callback, methods=["POST"]),
        Route(twilio_webhooks.INBOUND_PATH, twilio_inbound.inbound, methods=["POST"]),
        Route(resend_webhooks.PATH, resend_webhooks.resend_webhook, methods=["POST"]),
        Route(api_registrations.NOTIFY_PATH, api_registrations.notify, methods=["POST"]),
        Route(api_registrations.TIMELINE_PATH, api_registrations.timeline, methods=["GET"]),
        Route(api_me.LIST_PATH, api_me.list_mine, methods=["GET"]),
        Route(api_me.ITEM_PATH, api_me.update_mine, methods=["PATCH"]),
        *PORTAL_ROUTES,
        *STAFF_ROUTES,
    ]
    middleware = [Middleware(BodyLimitMiddleware, max_bytes=settings.relay_max_body_bytes,
                             timeout_s=settings.relay_body_timeout_s)]
    if settings.api_origins():
        # Outermost, so a preflight is answered before anything reads a body.
        # Bearer tokens, not cookies: no credentials mode.
        middleware.insert(0, Middleware(
            CORSMiddleware, allow_origins=settings.api_origins(),
            allow_methods=["GET", "POST", "PATCH"],
            allow_headers=["Authorization", "Content-Type"], max_age=600))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    # Starlette would answer `POST /tick/` with a 307 whose Location is built
    # from the request's Host header: a redirect anyone can aim anywhere.
    # Paths are exact here; anything else is a 404.
    app.router.redirect_slashes = False
    app.state.relay = relay
    app.state.portal = build_portal(settings, loopback=loopback, engine=relay.engine)
    app.state.openapi = openapi.build_openapi()
    app.state.openapi["paths"].update(PORTAL_PATHS)
    app.state.openapi["paths"].update(STAFF_PATHS)
    return app
