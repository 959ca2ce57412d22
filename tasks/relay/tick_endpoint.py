"""POST /tick: what pg_net sends from notification_tick(), and anyone holding RELAY_TOKEN."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tasks.relay.auth import TokenCheck, check_token, unauthorized
from tasks.relay.runtime import Relay

log = logging.getLogger(__name__)


async def tick(request: Request) -> Response:
    """202 {"task_id", "coalesced"}; 401 without the right token; 503 when the broker fails."""
    relay: Relay = request.app.state.relay
    check = check_token(request, relay.token)
    if check is not TokenCheck.OK:
        log.warning("POST /tick refused: %s token", check.value)
        return unauthorized(check)
    # The body ({"source": "pg_cron", "at": ...} from pg_net) is only read so
    # its size is enforced; its content changes nothing, so a malformed one
    # is accepted rather than parsed.
    await request.body()
    try:
        result = await run_in_threadpool(relay.request_tick, "http")
    except Exception as exc:
        log.warning("POST /tick: could not enqueue (%s)", type(exc).__name__)
        return JSONResponse({"error": "broker unavailable"}, status_code=503,
                            headers={"Retry-After": "5"})
    return JSONResponse({"task_id": result.task_id, "coalesced": result.coalesced},
                        status_code=202)
