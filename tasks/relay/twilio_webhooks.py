"""Twilio's signed webhooks: message status callbacks and inbound texts (STOP / START)."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from twilio.request_validator import RequestValidator

from db import deliveries, webhooks
from tasks.fallback import dispatch_fallbacks, fall_back_after_webhook
from tasks.masking import mask_phone, short_id
from tasks.relay.runtime import DatabaseUnavailable, Relay
from tasks.relay.webhook_common import database_down, forbidden, report_changes

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

#: Twilio's standard opt-out and opt-in keywords (matched trimmed, any case).
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
EMPTY_TWIML = "<Response/>"


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
        changes = await run_in_threadpool(
            _apply_status, relay, sid, status, error_code if final else None, message)
    except (SQLAlchemyError, DatabaseUnavailable) as exc:
        return database_down(STATUS_PATH, exc)
    outcome = report_changes(relay.metrics, "twilio_status", "twilio status", sid, status,
                             changes)
    return JSONResponse({"result": outcome})


def _opt(relay: Relay, phone: str, keyword: str, opt_out: bool) -> None:
    # The one opt-out path (see db.deliveries.set_sms_opt_out for its effect).
    with relay.engine().begin() as conn:
        deliveries.set_sms_opt_out(conn, phone, opted_out=opt_out, source=f"inbound:{keyword}")


async def inbound(request: Request) -> Response:
    """POST /webhooks/twilio/inbound: STOP-style keywords opt out, START-style opt back in."""
    relay: Relay = request.app.state.relay
    form = await verified_form(request, relay, INBOUND_PATH)
    if form is None:
        relay.metrics.webhooks.labels("twilio_inbound", "forbidden").inc()
        return forbidden()
    phone = (form.get("From") or "").strip()
    keyword = (form.get("Body") or "").strip().upper()
    opt_out = keyword in OPT_OUT_KEYWORDS
    if not (opt_out or keyword in OPT_IN_KEYWORDS):
        # The text itself is the customer's and stays out of the logs.
        log.info("inbound SMS from %s: not an opt-out or opt-in keyword",
                 mask_phone(phone) or "<none>")
        relay.metrics.webhooks.labels("twilio_inbound", "ignored").inc()
        return _twiml()
    if not _E164.match(phone):
        log.warning("inbound %s from %s: not an E.164 number, nothing recorded", keyword,
                    mask_phone(phone) or "<none>")
        relay.metrics.webhooks.labels("twilio_inbound", "ignored").inc()
        return _twiml()
    try:
        await run_in_threadpool(_opt, relay, phone, keyword, opt_out)
    except (SQLAlchemyError, DatabaseUnavailable) as exc:
        return database_down(INBOUND_PATH, exc)
    if opt_out:
        log.info("inbound %s from %s: opted out of SMS (preferences unchanged)",
                 keyword, mask_phone(phone))
        relay.metrics.webhooks.labels("twilio_inbound", "opt_out").inc()
    else:
        log.info("inbound %s from %s: may receive SMS again (preferences unchanged)",
                 keyword, mask_phone(phone))
        relay.metrics.webhooks.labels("twilio_inbound", "opt_in").inc()
    return _twiml()


def _twiml() -> Response:
    # Empty TwiML: Twilio's own opt-out handling already answers STOP/START,
    # and we have nothing to add to any other text.
    return Response(EMPTY_TWIML, media_type="text/xml")
