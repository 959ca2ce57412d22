"""What the provider webhooks share: refusals, database outages, and reporting status changes."""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse, Response

from db.webhooks import StatusChange
from tasks.masking import short_id
from tasks.relay.metrics import RelayMetrics

log = logging.getLogger(__name__)


def forbidden() -> Response:
    """403 for a missing or wrong signature: nothing was read into the database."""
    return JSONResponse({"error": "invalid signature"}, status_code=403)


def database_down(path: str, exc: Exception) -> Response:
    """503 so the provider retries; the transaction rolled back, so nothing changed."""
    log.error("%s: database unavailable (%s)", path, type(exc).__name__)
    return JSONResponse({"error": "database unavailable"}, status_code=503)


def report_changes(
    metrics: RelayMetrics,
    endpoint: str,
    what: str,
    message_id: str,
    status: str,
    changes: list[StatusChange],
) -> str:
    """Log and count what one status callback did; returns moved / noted / unchanged / unknown."""
    if not changes:
        # Providers retry errors, not unknown ids: a 200 and this line is all we can do.
        log.info("%s: unknown message id %s (%s); nothing to update",
                 what, short_id(message_id), status)
        outcome = "unknown"
    elif any(c.moved for c in changes):
        outcome = "moved"
        for c in changes:
            if c.new_status == c.previous_status:
                outcome = "noted"
                log.info("%s: delivery %d stays %s, noted", what, c.delivery_id, c.new_status)
            else:
                log.info("%s: delivery %d %s -> %s", what, c.delivery_id, c.previous_status,
                         c.new_status)
    else:
        log.info("%s: delivery %s stays %s (%s is not a step forward)", what,
                 ",".join(str(c.delivery_id) for c in changes), changes[0].previous_status,
                 status)
        outcome = "unchanged"
    metrics.webhooks.labels(endpoint, outcome).inc()
    return outcome
