"""Twilio's signed webhooks: signature checks and message status callbacks.

Inbound texts (replies, STOP, HELP ...) are tasks/relay/twilio_inbound.py's.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from twilio.request_validator import RequestValidator

from db import webhooks
from db.connector import family_errors
from db.errors import DatabaseError
from tasks.masking import short_id
from tasks.relay.runtime import Relay
from tasks.relay.webhook_common import database_down, forbidden, report_changes
from tasks.sending.fallback import dispatch_fallbacks, fall_back_after_webhook

log = logging.getLogger(__name__)

STATUS_PATH = "/webhooks/twilio/status"
INBOUND_PATH = "/webhooks/twilio/inbound"

#: Twilio's MessageStatus values -> our delivery status. Twilio's early
#: states (accepted, scheduled, queued) all mean "not yet sent" to us.
TWILIO_STATUS = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "sending",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    # A canceled (scheduled) message will never be sent: a final failure.
    "canceled": "failed",
}



def _signed_url(request: Request, relay: Relay, path: str) -> str:
    """The URL Twilio signed: the public one (what Twilio called), not what reached us."""
    base = relay.settings.relay_public_url or str(request.base_url).rstrip("/")
    query = request.url.query
    return f"{base}{path}?{query}" if query else f"{base}{path}"


def _algorithm(request: Request) -> str | None:
    """The signing algorithm Twilio names, where this SDK knows the header (SHA1 otherwise)."""
    try:
        from twilio.request_validator import get_signature_algorithm
    except ImportError:  # older SDKs sign with the auth token and HMAC-SHA1 only
        return None
    return get_signature_algorithm(request.headers.get("x-twilio-webhooks-signature-settings"))


async def verified_form(request: Request, relay: Relay, path: str) -> ImmutableMultiDict | None:
    """The form parameters when X-Twilio-Signature is right for them, else None."""
    body = await request.body()
    signature = request.headers.get("x-twilio-signature")
    token = relay.settings.twilio_auth_token
    if token is None or not token.get_secret_value():
        log.error("%s: TWILIO_AUTH_TOKEN is not set, so no signature can be verified", path)
        return None
    if not signature:
        log.warning("%s: refused, no X-Twilio-Signature", path)
        return None
    try:
        params = ImmutableMultiDict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        log.warning("%s: refused, body is not a form", path)
        return None
    validator = RequestValidator(token.get_secret_value())
    if not validator.validate(_signed_url(request, relay, path), params, signature,
                              _algorithm(request)):
        log.warning("%s: refused, X-Twilio-Signature does not match", path)
        return None
    return params


def _apply_status(
    relay: Relay, sid: str, status: str, error_code: str | None, message: str | None
) -> list[webhooks.StatusChange]:
    with relay.engine().begin() as conn:
        changes = webhooks.apply_status(conn, channel="sms", provider_message_id=sid,
                                        status=status, error_code=error_code,
                                        error_message=message)
        # An undelivered/failed text: the e-mail, in the same transaction.
        fallbacks = fall_back_after_webhook(conn, changes)
    dispatch_fallbacks(fallbacks)
    return changes


async def status_callback(request: Request) -> Response:
    """POST /webhooks/twilio/status: move the SMS delivery forward; 403 on a bad signature."""
    relay: Relay = request.app.state.relay
    form = await verified_form(request, relay, STATUS_PATH)
    if form is None:
        relay.metrics.webhooks.labels("twilio_status", "forbidden").inc()
        return forbidden()
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    twilio_status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    error_code = (form.get("ErrorCode") or "").strip()[:32] or None
    status = TWILIO_STATUS.get(twilio_status)
    if not sid or status is None:
        log.info("twilio status: ignored %r for %s", twilio_status[:32], short_id(sid))
        relay.metrics.webhooks.labels("twilio_status", "ignored").inc()
        return JSONResponse({"result": "ignored"})
    final = status in ("undelivered", "failed")
    message = None
    if final:
        message = (f"Twilio reported {twilio_status} with error {error_code}" if error_code
                   else f"Twilio reported {twilio_status} without an error code")
    try:
        with family_errors():
            changes = await run_in_threadpool(
                _apply_status, relay, sid, status, error_code if final else None, message)
    except DatabaseError as exc:
        return database_down(STATUS_PATH, exc)
    outcome = report_changes(relay.metrics, "twilio_status", "twilio status", sid, status,
                             changes)
    return JSONResponse({"result": outcome})
