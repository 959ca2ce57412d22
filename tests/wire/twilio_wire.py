"""A fake of Twilio's Messages API (2010-04-01) that the real ``twilio`` SDK
talks to unmodified.

Point the SDK at it with::

    client = Client(wire.account_sid, wire.auth_token)
    client.edge = client.region = None
    client.api.base_url = wire.url

or simply ``wire.client(timeout=2)``.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from ._core import (
    ACCEPTED,
    ACCEPTED_DROPPED,
    ACCEPTED_TIMEOUT,
    BAD_REQUEST,
    DROPPED,
    NOT_FOUND,
    RATE_LIMITED,
    READ,
    REJECTED,
    SERVER_ERROR,
    UNAUTHORIZED,
    AcceptedSend,
    Reply,
    Step,
    WireRequest,
    WireServer,
)

if TYPE_CHECKING:
    from twilio.rest import Client

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
DEFAULT_AUTH_TOKEN = "wire_auth_token"

#: Twilio's documented magic ``To`` numbers for test credentials, applied
#: here to every account: number -> (error code, message). All answer 400.
TWILIO_MAGIC_TO: dict[str, tuple[int, str]] = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550002": (
        21612,
        "The 'To' phone number: +15005550002, is not currently reachable using the "
        "'From' phone number via SMS.",
    ),
    "+15005550003": (
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by "
        "the 'To' number: +15005550003.",
    ),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}

#: Magic ``From`` numbers -> (error code, message). ``+15005550006`` is the
#: documented *valid* magic sender and is accepted like any other number.
TWILIO_MAGIC_FROM: dict[str, tuple[int, str]] = {
    "+15005550001": (
        21212,
        "The 'From' number +15005550001 is not a valid phone number, shortcode, "
        "or alphanumeric sender ID.",
    ),
    "+15005550007": (
        21606,
        "The 'From' phone number provided (+15005550007) is not a valid message-capable "
        "Twilio phone number for this destination/account.",
    ),
    "+15005550008": (
        21611,
        "This 'From' number has exceeded the maximum number of queued messages",
    ),
}

# Messages for codes usable in scripts; unknown codes get a generic text.
_CODE_MESSAGES: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "An internal server error has occurred"),
    21211: (400, "The 'To' number is not a valid phone number."),
    21212: (400, "The 'From' number is not a valid phone number."),
    21408: (400, "Permission to send an SMS has not been enabled for the region."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21606: (400, "The 'From' phone number provided is not a valid message-capable number."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21611: (400, "This 'From' number has exceeded the maximum number of queued messages"),
    21612: (400, "The 'To' phone number is not currently reachable via SMS."),
    21614: (400, "'To' number is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    21701: (400, "The Messaging Service Sid is invalid."),
}

_STATUS_CODES = {401: 20003, 404: 20404, 429: 20429}

_E164 = re.compile(r"^(?:[a-z]+:)?\+[1-9]\d{1,14}$")
_MG_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages(?:/([^/]+))?\.json$")

# GSM 03.38 basic set; anything else forces UCS-2 (70-char segments).
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def segments(body: str) -> list[str]:
    """The parts a long text travels in, as Twilio splits it for the carriers.

    A part holds 153 septets (GSM-7) or 67 UTF-16 units (UCS-2) next to its
    concatenation header, and never ends inside an escape pair or a surrogate
    pair: that character opens the next part. One part holds 160 or 70.
    """
    gsm = all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in body)

    def size(c: str) -> int:
        if gsm:
            return 2 if c in _GSM_EXTENDED else 1
        return len(c.encode("utf-16-le")) // 2

    if sum(size(c) for c in body) <= (160 if gsm else 70):
        return [body]
    limit = 153 if gsm else 67
    parts: list[str] = []
    current, used = "", 0
    for c in body:
        if used + size(c) > limit:
            parts.append(current)
            current, used = "", 0
        current += c
        used += size(c)
    parts.append(current)
    return parts


def num_segments(body: str) -> int:
    """SMS segment count the way Twilio reports and carriers bill it (GSM-7 or UCS-2)."""
    return len(segments(body))


def _rfc2822(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(int(ts), UTC))


def _parse_filter_date(value: str) -> tuple[datetime, bool]:
    """Parse a DateSent filter; returns (moment, is_date_only)."""
    value = value.strip()
    if len(value) == 10:
        day = date.fromisoformat(value)
        return datetime(day.year, day.month, day.day, tzinfo=UTC), True
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC), False


class TwilioWire(WireServer):
    """Fake Twilio Messages API with a ledger and fault injection.

    Endpoints: ``POST/GET /2010-04-01/Accounts/{sid}/Messages.json`` and
    ``GET .../Messages/{MessageSid}.json``; HTTP basic auth with
    ``account_sid``/``auth_token`` (401, code 20003, otherwise).
    """

    provider = "twilio"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        **kwargs: Any,
    ) -> None:
        """See ``WireServer.__init__``; ``account_sid``/``auth_token`` are the
        only credentials accepted."""
        self.account_sid = account_sid
        self.auth_token = auth_token
        expected = f"{account_sid}:{auth_token}".encode()
        self._expected_auth = "Basic " + base64.b64encode(expected).decode("ascii")
        super().__init__(host, port, **kwargs)

    # -- SDK convenience ---------------------------------------------------------

    def client(self, timeout: float | None = None) -> Client:
        """A real ``twilio.rest.Client`` pointed at this wire."""
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        client = Client(
            self.account_sid, self.auth_token, http_client=TwilioHttpClient(timeout=timeout)
        )
        client.edge = None
        client.region = None
        client.api.base_url = self.url
        return client

    def set_status(self, sid: str, status: str, error_code: int | None = None) -> AcceptedSend:
        """Change the status a later fetch/list reports (e.g. ``undelivered``)."""
        with self._lock:
            send = self._by_id[sid]
            send.status = status
            send.error_code = error_code
            return send

    # -- provider behaviour --------------------------------------------------------

    def _error_reply(
        self,
        status: int,
        code: int | str | None,
        message: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Reply:
        if code is None:
            code = _STATUS_CODES.get(status, 20500 if status >= 500 else status)
        code = int(code)
        if message is None:
            message = _CODE_MESSAGES.get(code, (status, f"Error {code}"))[1]
        return Reply.json(
            status,
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            headers,
        )

    def _parse_provider_step(self, token: str) -> Step | None:
        head, _, arg = token.partition(":")
        if head.isdigit() and len(head) == 3 and 400 <= int(head) <= 599:
            status = int(head)
            code = int(arg) if arg.isdigit() else None
            return Step("error", status=status, code=code, raw=token)
        if head.isdigit() and len(head) == 5 and not arg:
            code = int(head)
            status = _CODE_MESSAGES.get(code, (400, ""))[0]
            return Step("error", status=status, code=code, raw=token)
        return None

    def _route(self, request: WireRequest) -> Reply | None:
        match = _MESSAGES_PATH.match(request.path)
        if match is None:
            self._count(NOT_FOUND, 404)
            return self._error_reply(
                404, 20404, f"The requested resource {request.path} was not found"
            )
        if request.header("Authorization") != self._expected_auth:
            self._sleep(self._config.latency)
            # A refused create is still a send attempt the app made.
            is_create = request.method == "POST" and match.group(2) is None
            self._count(UNAUTHORIZED, 401, request if is_create else None)
            return self._error_reply(
                401, 20003, "Authenticate", [("WWW-Authenticate", 'Basic realm="Twilio API"')]
            )
        account, message_sid = match.groups()
        if account != self.account_sid:
            self._count(NOT_FOUND, 404)
            return self._error_reply(
                404, 20404, f"The requested resource {request.path} was not found"
            )
        if request.method == "POST" and message_sid is None:
            return self._create(request)
        if request.method == "GET":
            return self._read(request, message_sid)
        self._count(NOT_FOUND, 405)
        return self._error_reply(405, 20004, "Method not allowed")

    def _create(self, request: WireRequest) -> Reply | None:
        try:
            form = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            self._count(BAD_REQUEST, 400, request)
            return self._error_reply(400, 20001, "Request body is not valid UTF-8")
        params = {k: v[0] for k, v in form.items()}
        to = params.get("To", "").strip()
        key = request.header("I-Twilio-Idempotency-Token") or request.header("Idempotency-Key")

        step = self._decide([to], is_read=False)
        self._sleep(self._config.latency)
        if step is not None and step.kind == "latency":
            self._sleep(step.seconds)
            step = None
        if step is not None:
            if step.kind == "rate_limit":
                header = self._retry_after_header(step.seconds)
                self._count(RATE_LIMITED, 429, request, recipient=to, idempotency_key=key)
                return self._error_reply(429, 20429, None, [("Retry-After", header)])
            if step.kind == "error":
                outcome = SERVER_ERROR if step.status >= 500 else REJECTED
                self._count(outcome, step.status, request, recipient=to, idempotency_key=key)
                return self._error_reply(step.status, step.code)
            if step.kind == "drop":
                self._count(DROPPED, 0, request, recipient=to, idempotency_key=key)
                return None

        failure = self._validate(params)
        if failure is not None:
            status, code, message = failure
            self._count(REJECTED, status, request, recipient=to, idempotency_key=key)
            return self._error_reply(status, code, message)

        now = request.received_at
        sid = "SM" + uuid.uuid4().hex
        # A scripted plain "accept" is not a fault; only the accept-then-fail
        # kinds are, and they are what a ledger reader wants to see.
        fault = (
            step.kind
            if step is not None and step.kind in ("timeout_after_accept", "drop_after_accept")
            else None
        )
        mss = params.get("MessagingServiceSid") or None
        from_ = params.get("From") or None
        callback = params.get("StatusCallback") or None
        # Twilio answers "accepted" when it still has to pick a sender from
        # the Messaging Service pool, "queued" otherwise.
        initial_status = "accepted" if mss and not from_ else "queued"

        def build(seq: int) -> AcceptedSend:
            return AcceptedSend(
                seq=seq,
                provider=self.provider,
                id=sid,
                to=to,
                recipients=[to],
                from_=from_,
                body=params.get("Body"),
                subject=None,
                html=None,
                idempotency_key=key,
                status_callback=callback,
                messaging_service_sid=mss,
                received_at=now,
                received_mono=request.received_mono,
                accepted_at=time.time(),
                fault=fault,
                payload={k: (v if len(v) > 1 else v[0]) for k, v in form.items()},
                status=initial_status,
            )

        send = self._record_send(build)
        payload = self._resource(send)
        if fault == "drop_after_accept":
            self._count(
                ACCEPTED_DROPPED, 0, request, recipient=to, idempotency_key=key, send_id=sid
            )
            return None
        if fault == "timeout_after_accept":
            self._count(
                ACCEPTED_TIMEOUT, 201, request, recipient=to, idempotency_key=key, send_id=sid
            )
            self._sleep(step.seconds if step is not None else 0.0)
        else:
            self._count(ACCEPTED, 201, request, recipient=to, idempotency_key=key, send_id=sid)
        return Reply.json(201, payload)

    def _validate(self, params: dict[str, str]) -> tuple[int, int, str] | None:
        to = params.get("To", "").strip()
        from_ = params.get("From", "").strip()
        mss = params.get("MessagingServiceSid", "").strip()
        body = params.get("Body", "")
        if not to:
            return 400, 21604, "A 'To' phone number is required."
        if not from_ and not mss:
            return 400, 21603, "A 'From' phone number is required."
        if not body and not params.get("MediaUrl") and not params.get("ContentSid"):
            return 400, 21602, "Message body is required."
        if mss and not _MG_SID.match(mss):
            return 400, 21701, f"The Messaging Service Sid {mss} is invalid."
        if not _E164.match(to):
            return 400, 21211, f"The 'To' number {to} is not a valid phone number."
        if from_ in TWILIO_MAGIC_FROM:
            code, message = TWILIO_MAGIC_FROM[from_]
            return 400, code, message
        if to in TWILIO_MAGIC_TO:
            code, message = TWILIO_MAGIC_TO[to]
            return 400, code, message
        if len(body) > 1600:
            return 400, 21617, "The concatenated message body exceeds the 1600 character limit."
        return None

    def _resource(self, send: AcceptedSend) -> dict[str, Any]:
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{send.id}"
        stamp = _rfc2822(send.received_at)
        went_out = self._went_out_at(send)
        media = send.payload.get("MediaUrl")
        num_media = 0 if not media else (len(media) if isinstance(media, list) else 1)
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": send.body or "",
            "date_created": stamp,
            "date_sent": None if went_out is None else _rfc2822(went_out),
            "date_updated": stamp,
            "direction": "outbound-api",
            "error_code": send.error_code,
            "error_message": None,
            "from": send.from_,
            "messaging_service_sid": send.messaging_service_sid,
            "num_media": str(num_media),
            "num_segments": str(num_segments(send.body or "")),
            "price": None,
            "price_unit": "USD",
            "sid": send.id,
            "status": send.status,
            "subresource_uris": {"media": f"{base}/Media.json"},
            "to": send.to,
            "uri": f"{base}.json",
        }

    def _went_out_at(self, send: AcceptedSend) -> float | None:
        """When the message left Twilio's queue (its DateSent), or None while it waits."""
        went_out = send.received_at + self._config.carrier_queue_s
        return went_out if went_out <= time.time() else None

    def _read(self, request: WireRequest, message_sid: str | None) -> Reply | None:
        step = self._decide([], is_read=True)
        self._sleep(self._config.latency)
        if step is not None:
            if step.kind == "rate_limit":
                self._count(RATE_LIMITED, 429)
                header = self._retry_after_header(step.seconds)
                return self._error_reply(429, 20429, None, [("Retry-After", header)])
            if step.kind == "error":
                self._count(SERVER_ERROR, step.status)
                return self._error_reply(step.status, step.code)
            if step.kind == "drop":
                self._count(DROPPED, 0)
                return None
        if message_sid is not None:
            with self._lock:
                send = self._by_id.get(message_sid)
                payload = self._resource(send) if send is not None else None
            if payload is None:
                self._count(NOT_FOUND, 404)
                return self._error_reply(
                    404, 20404, f"The requested resource {request.path} was not found"
                )
            self._count(READ, 200)
            return Reply.json(200, payload)
        try:
            return self._list(request)
        except ValueError as exc:
            self._count(BAD_REQUEST, 400)
            return self._error_reply(400, 20001, f"Invalid filter: {exc}")

    def _list(self, request: WireRequest) -> Reply:
        to = request.arg("To")
        from_ = request.arg("From")
        page_size = min(1000, max(1, int(request.arg("PageSize") or 50)))
        page = int(request.arg("Page") or 0)
        token = request.arg("PageToken")
        # The token is the seq of the last record already returned; records
        # are newest first, so the next page is everything older. Unlike an
        # offset, this stays correct while new messages keep arriving.
        before_seq = int(token[2:]) if token and token.startswith("PA") else None

        checks = []
        for name, op in (("DateSent", "eq"), ("DateSent>", "ge"), ("DateSent<", "le")):
            raw = request.arg(name)
            if raw:
                moment, date_only = _parse_filter_date(raw)
                checks.append((op, moment, date_only))

        def wanted(send: AcceptedSend) -> bool:
            if from_ is not None and send.from_ != from_:
                return False
            if before_seq is not None and send.seq >= before_seq:
                return False
            went_out = self._went_out_at(send)
            if went_out is None:
                # Still queued: no DateSent, so no DateSent filter matches it.
                return not checks
            # Twilio timestamps have one-second resolution; compare likewise.
            sent = datetime.fromtimestamp(int(went_out), UTC)
            for op, moment, date_only in checks:
                if op == "eq" and date_only and sent.date() != moment.date():
                    return False
                if op == "eq" and not date_only and sent != moment:
                    return False
                if op == "ge" and sent < moment:
                    return False
                if op == "le" and date_only and sent.date() > moment.date():
                    return False
                if op == "le" and not date_only and sent > moment:
                    return False
            return True

        with self._lock:
            pool = self._sends if to is None else self._by_recipient.get(to.strip(), [])
            selected: list[dict[str, Any]] = []
            last_seq = None
            has_more = False
            for send in reversed(pool):
                if not wanted(send):
                    continue
                if len(selected) == page_size:
                    has_more = True
                    break
                selected.append(self._resource(send))
                last_seq = send.seq

        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"
        filters = [
            (k, request.arg(k))
            for k in ("To", "From", "DateSent", "DateSent>", "DateSent<")
            if request.arg(k) is not None
        ]
        first = [*filters, ("PageSize", str(page_size)), ("Page", "0")]
        current = [*filters, ("PageSize", str(page_size)), ("Page", str(page))]
        if token:
            current.append(("PageToken", token))
        next_uri = None
        if has_more and last_seq is not None:
            nxt = [
                *filters,
                ("PageSize", str(page_size)),
                ("Page", str(page + 1)),
                ("PageToken", f"PA{last_seq}"),
            ]
            next_uri = f"{base}?{urlencode(nxt)}"
        start = page * page_size
        # Exactly one non-meta key ("messages"): the SDK's Page finds the
        # records by subtracting its known meta keys from the payload keys.
        payload = {
            "messages": selected,
            "end": start + max(0, len(selected) - 1),
            "first_page_uri": f"{base}?{urlencode(first)}",
            "next_page_uri": next_uri,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": None,
            "start": start,
            "uri": f"{base}?{urlencode(current)}",
        }
        self._count(READ, 200)
        return Reply.json(200, payload)

    def _control_extra(self, request: WireRequest, name: str) -> Reply | None:
        if name == "status" and request.method == "POST":
            data = request.json() or {}
            send = self.set_status(str(data["sid"]), str(data["status"]), data.get("error_code"))
            return Reply.json(200, send.to_dict())
        if name == "info" and request.method == "GET":
            return Reply.json(
                200,
                {"account_sid": self.account_sid, "auth_token": self.auth_token, "url": self.url},
            )
        return None
