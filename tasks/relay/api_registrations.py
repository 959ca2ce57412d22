"""Staff's routes: POST /api/registrations/{id}/notify and GET /api/registrations/{id}/timeline.

Both call the SQL functions PostgREST serves (/rest/v1/rpc/...), as the caller.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from db.as_caller import Statement
from db.queries import query
from tasks.relay.api_common import (
    Refusal,
    answer,
    as_the_caller,
    caller_claims,
    error,
    json_object,
    not_found,
    registration_id,
    scalar,
)
from tasks.relay.runtime import Relay

log = logging.getLogger(__name__)

NOTIFY_PATH = "/api/registrations/{id}/notify"
TIMELINE_PATH = "/api/registrations/{id}/timeline"


async def notify(request: Request) -> Response:
    """200 with request_notification's answer; 403 for a non-admin; 404 unknown or invisible."""
    return await answer(request, _notify)


async def _notify(request: Request) -> Response:
    claims = await caller_claims(request)
    reg = registration_id(request)
    body = await json_object(request, required=False)
    bypass = body.pop("bypass_quiet_hours", False)
    if not isinstance(bypass, bool) or body:
        raise Refusal(error(422, 'the body may hold only {"bypass_quiet_hours": true|false}'))
    [rows] = await as_the_caller(request, claims, Statement(
        query("request_notification"),
        {"registration_id": reg, "bypass_quiet_hours": bypass}))
    result = scalar(rows)
    if result["queued"]:
        # As `regnotify send` does: a queue run now rather than at the next
        # tick (the function's NOTIFY reaches a LISTENing relay too; the two
        # coalesce). A broker failure is logged; the row waits for the tick.
        relay: Relay = request.app.state.relay
        await run_in_threadpool(relay.background_tick, "api")
    return JSONResponse(result)


async def timeline(request: Request) -> Response:
    """200 with notification_timeline as the caller may see it; 404 when they cannot."""
    return await answer(request, _timeline)


async def _timeline(request: Request) -> Response:
    claims = await caller_claims(request)
    reg = registration_id(request)
    [rows] = await as_the_caller(request, claims, Statement(
        query("notification_timeline"), {"registration_id": reg}))
    doc = scalar(rows)
    if doc is None:
        raise not_found()
    return JSONResponse(doc)
