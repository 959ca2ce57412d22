"""Resend's Svix-signed e-mail events: delivered, bounced, complained, delayed, failed."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from svix.webhooks import Webhook

from db import webhooks
from db.connector import family_errors
from db.errors import DatabaseError
from tasks.masking import short_id
from tasks.relay.runtime import Relay
from tasks.relay.webhook_common import database_down, forbidden, report_changes
from tasks.sending.fallback import dispatch_fallbacks, fall_back_after_webhook

log = logging.getLogger(__name__)

PATH = "/webhooks/resend"
PROVIDER = "resend"

#: Event type -> the delivery status it sets (None: note only, no status change).
HANDLED_EVENTS: dict[str, str | None] = {
    "email.sent": "sent",
    "email.delivered": "delivered",
    "email.bounced": "bounced",
    "email.complained": "complained",
    "email.failed": "failed",
    "email.delivery_delayed": None,
}


@dataclass(frozen=True)
class EmailEvent:
    """The parts of a Resend event we act on."""

    event_id: str
    type: str
    email_id: str
    status: str | None
    error_code: str | None
    error_message: str | None
    occurred_at: datetime | None


def verify(body: bytes, request: Request, relay: Relay) -> bool:
    """Whether the Svix signature over the raw body is valid and at most 5 minutes off."""
    secret = relay.settings.resend_webhook_secret
    if secret is None or not secret.get_secret_value():
        log.error("%s: RESEND_WEBHOOK_SECRET is not set, so no signature can be verified", PATH)
        return False
    try:
        verifier = Webhook(secret.get_secret_value())
    except Exception as exc:
        log.error("%s: RESEND_WEBHOOK_SECRET is not a valid whsec_ secret (%s)", PATH,
                  type(exc).__name__)
        return False
    try:
        verifier.verify(body, dict(request.headers.items()))
    except Exception as exc:
        # Malformed headers raise ValueError or UnicodeDecodeError rather
        # than WebhookVerificationError; all of them are a refusal.
        log.warning("%s: refused (%s: %s)", PATH, type(exc).__name__, str(exc)[:80])
        return False
    return True


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_event(event_id: str, payload: Any) -> EmailEvent | None:
    """The event when it is one we handle and names an email, else None."""
    if not isinstance(payload, dict):
        return None
    kind = payload.get("type")
    data = payload.get("data")
    if kind not in HANDLED_EVENTS or not isinstance(data, dict):
        return None
    email_id = data.get("email_id")
    if not isinstance(email_id, str) or not email_id:
        return None
    occurred_at = _parse_time(payload.get("created_at"))
    code: str | None = None
    message: str | None = None
    if kind == "email.bounced":
        bounce = data.get("bounce") if isinstance(data.get("bounce"), dict) else {}
        kinds = [str(bounce[k]) for k in ("type", "subType") if bounce.get(k)]
        code = "bounce:" + "/".join(kinds) if kinds else "bounce"
        message = str(bounce.get("message") or "the recipient's mail server rejected the e-mail")
    elif kind == "email.complained":
        code = "complaint"
        message = "the recipient marked the e-mail as spam"
    elif kind == "email.failed":
        failed = data.get("failed") if isinstance(data.get("failed"), dict) else {}
        reason = str(failed.get("reason") or "") or None
        code = reason or "failed"
        message = f"Resend could not send the e-mail: {reason or 'no reason given'}"
    elif kind == "email.delivery_delayed":
        when = occurred_at.isoformat() if occurred_at else "an unknown time"
        message = f"delivery delayed (Resend email.delivery_delayed at {when})"
    return EmailEvent(event_id, kind, email_id, HANDLED_EVENTS[kind], code, message, occurred_at)


def _apply(relay: Relay, event: EmailEvent) -> list[webhooks.StatusChange] | None:
    """Apply once per svix-id, in one transaction; None for a replay."""
    with relay.engine().begin() as conn:
        if not webhooks.first_seen(conn, PROVIDER, event.event_id):
            return None
        if event.status is None:
            return webhooks.note_delay(conn, channel="email", provider_message_id=event.email_id,
                                       message=event.error_message or "delivery delayed")
        changes = webhooks.apply_status(
            conn, channel="email", provider_message_id=event.email_id, status=event.status,
            error_code=event.error_code, error_message=event.error_message,
            occurred_at=event.occurred_at,
        )
        # A hard bounce: the text, in the same transaction.
        fallbacks = fall_back_after_webhook(conn, changes)
    dispatch_fallbacks(fallbacks)
    return changes


async def resend_webhook(request: Request) -> Response:
    """POST /webhooks/resend: 403 on a bad signature, 200 for replays and unknown ids."""
    relay: Relay = request.app.state.relay
    body = await request.body()
    if not verify(body, request, relay):
        relay.metrics.webhooks.labels("resend", "forbidden").inc()
        return forbidden()
    event_id = request.headers.get("svix-id", "")
    try:
        payload = json.loads(body)
    except ValueError:
        # Signed by Resend yet not JSON: a retry would not fix it.
        log.warning("%s: signed body %s is not JSON; ignored", PATH, short_id(event_id))
        payload = None
    event = parse_event(event_id, payload)
    if event is None:
        kind = payload.get("type") if isinstance(payload, dict) else None
        log.info("%s: event %s (%s) ignored", PATH, short_id(event_id),
                 str(kind)[:40] if kind else "no type")
        relay.metrics.webhooks.labels("resend", "ignored").inc()
        return JSONResponse({"result": "ignored"})
    try:
        with family_errors():
            changes = await run_in_threadpool(_apply, relay, event)
    except DatabaseError as exc:
        # Svix retries non-2xx answers; the rolled-back transaction forgot the svix-id too.
        return database_down(PATH, exc)
    if changes is None:
        log.info("%s: event %s already applied; replay ignored", PATH, short_id(event_id))
        relay.metrics.webhooks.labels("resend", "duplicate").inc()
        return JSONResponse({"result": "duplicate"})
    outcome = report_changes(relay.metrics, "resend", f"resend {event.type}", event.email_id,
                             event.status or "delayed", changes)
    return JSONResponse({"result": outcome})
