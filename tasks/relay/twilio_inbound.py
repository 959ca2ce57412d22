"""POST /webhooks/twilio/inbound: every text a customer sends is kept and reaches a person.

Each text is stored once per MessageSid (Twilio retries a webhook). Then:
- an opt-out keyword (STOP, REVOKE ...) opts the number out, an opt-in one
  (START ...) lets it receive texts again: db.deliveries.set_sms_opt_out;
- HELP / INFO is answered with notification_config.help_reply when it is set
  and Twilio's Advanced Opt-Out did not answer already (it says so in OptOutType);
- anything else joins the number's reply digest, one e-mail to staff per
  burst (tasks/worker/send_reply_digest.py), and the customer hears, at most once
  per reply_ack_every, that their text was passed on.
The keyword lists are notification_config's (migration 16), matched on the
trimmed text in any case.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from xml.sax.saxutils import escape

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from db import deliveries, replies
from db.connector import family_errors
from db.errors import DatabaseError
from db.replies import TWILIO_OPT_OUT_TYPES, Inbound
from tasks.masking import mask_phone, short_id
from tasks.messages.reply_mail import passed_on
from tasks.relay.runtime import Relay
from tasks.relay.twilio_webhooks import INBOUND_PATH, verified_form
from tasks.relay.webhook_common import database_down, forbidden

log = logging.getLogger(__name__)

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
EMPTY_TWIML = "<Response/>"


@dataclass(frozen=True)
class _Handled:
    #: None: a replay of a text seen before whose row was pruned (nothing done).
    inbound: Inbound | None
    #: The TwiML <Message> to answer with, if any.
    answer: str | None


def _handle(relay: Relay, sid: str, phone: str, to: str | None, body: str,
            twilio_kind: str | None) -> _Handled:
    with relay.engine().begin() as conn:
        # One text of a number at a time: its digest and its answer read the last one's.
        replies.lock_number(conn, phone)
        inbound = replies.record(conn, message_sid=sid, from_phone=phone, to_phone=to, body=body,
                                 twilio_kind=twilio_kind)
        if inbound is None:
            # Seen before, its row pruned since: a captured request sent again.
            # A replayed STOP or START must change nothing.
            return _Handled(None, None)
        config = replies.settings(conn)
        kind = inbound.keyword_kind
        if kind in ("opt_out", "opt_in"):
            if inbound.new and _E164.match(phone):
                deliveries.set_sms_opt_out(conn, phone, opted_out=kind == "opt_out",
                                           source=f"inbound:{inbound.keyword}")
            return _Handled(inbound, None)
        if kind == "help":
            # Advanced Opt-Out answered HELP itself when it named the type.
            answer = config.help_reply if twilio_kind is None else None
            return _Handled(inbound, answer)
        if inbound.new:
            if config.staff_email:
                replies.join_digest(conn, inbound, phone)
            acknowledged = replies.acknowledge(conn, inbound.id)
        else:
            # Twilio sent it again because our answer was lost: the same answer.
            acknowledged = inbound.acknowledged_at is not None
        answer = passed_on(relay.settings.dealership_name, config.dealership_phone)
        return _Handled(inbound, answer if acknowledged else None)


def _outcome(handled: _Handled) -> str:
    if handled.inbound is None:
        return "replayed"
    if not handled.inbound.new:
        return "duplicate"
    return handled.inbound.keyword_kind or "reply"


async def inbound(request: Request) -> Response:
    """Keep the text, act on a keyword, forward a reply to staff; 403 on a bad signature."""
    relay: Relay = request.app.state.relay
    form = await verified_form(request, relay, INBOUND_PATH)
    if form is None:
        relay.metrics.webhooks.labels("twilio_inbound", "forbidden").inc()
        return forbidden()
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip() or _stand_in_sid(request)
    phone = (form.get("From") or "").strip()
    to = (form.get("To") or "").strip() or None
    body = form.get("Body") or ""
    twilio_kind = TWILIO_OPT_OUT_TYPES.get((form.get("OptOutType") or "").strip().upper())
    if not phone:
        log.warning("inbound SMS without a sender: nothing to keep")
        relay.metrics.webhooks.labels("twilio_inbound", "ignored").inc()
        return _twiml(None)
    try:
        with family_errors():
            handled = await run_in_threadpool(_handle, relay, sid, phone, to, body, twilio_kind)
    except DatabaseError as exc:
        return database_down(INBOUND_PATH, exc)
    outcome = _outcome(handled)
    # The text itself is the customer's and stays out of the logs.
    who = mask_phone(phone) or "<none>"
    seen = handled.inbound
    if seen is not None and seen.registration_id is None:
        who += " (unknown number)"
    log.info("inbound SMS %s from %s: %s%s", short_id(sid), who, outcome,
             f" {seen.keyword}" if seen is not None and seen.keyword else "")
    relay.metrics.webhooks.labels("twilio_inbound", outcome).inc()
    return _twiml(handled.answer)


def _stand_in_sid(request: Request) -> str:
    """A key for a signed text without a MessageSid (Twilio always sends one).

    The signature covers the URL and every parameter, so a retry of the same
    request has the same one: the text is still stored once.
    """
    signature = request.headers.get("x-twilio-signature", "")
    return "nosid-" + hashlib.sha256(signature.encode()).hexdigest()[:32]


def _twiml(message: str | None) -> Response:
    # Empty TwiML where Twilio's own keyword handling answers, or nothing is due.
    if not message:
        return Response(EMPTY_TWIML, media_type="text/xml")
    return Response(f"<Response><Message>{escape(message)}</Message></Response>",
                    media_type="text/xml")
