"""A fake of Twilio Verify v2 (verifications and verification checks) that the real
``twilio`` SDK talks to once ``client.verify.base_url`` points here.

As Twilio Verify does:

- ``POST /v2/Services/{VA}/Verifications`` (``To``, ``Channel=sms``) texts a
  6-digit code and answers 201 with a verification resource (``status``
  ``pending``); another send to the same number while one is pending keeps
  the same code and adds a ``send_code_attempts`` entry; the 6th send within
  10 minutes is ``429`` code 60203 (Max send attempts reached);
- ``POST /v2/Services/{VA}/VerificationCheck`` (``To``, ``Code``): a right
  code answers ``approved``/``valid: true`` and ends the verification; a wrong
  one ``pending``/``valid: false``; after 5 wrong checks the next is ``429``
  code 60202 (Max check attempts reached); a verification that is over
  (approved, expired after ``ttl`` seconds, or never started) is ``404`` 20404;
- HTTP basic auth with the account SID and auth token (401 20003 otherwise);
  an unknown service SID is 404 20404; a bad ``To`` is 400 60200.

Scripts (``429``, ``NNN``, ``NNN:CODE`` or a five-digit code) apply to the
next request for a number.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from ._core import (
    ACCEPTED,
    BAD_REQUEST,
    NOT_FOUND,
    RATE_LIMITED,
    READ,
    REJECTED,
    UNAUTHORIZED,
    AcceptedSend,
    Reply,
    Step,
    WireRequest,
    WireServer,
)
from .twilio_wire import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

DEFAULT_SERVICE_SID = "VA" + "fedcba9876543210" * 2

_MESSAGES: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too many requests"),
    60200: (400, "Invalid parameter"),
    60202: (429, "Max check attempts reached"),
    60203: (429, "Max send attempts reached"),
    60205: (400, "SMS is not supported by landline phone number"),
}


@dataclass
class _Verification:
    sid: str
    to: str
    code: str
    created: float
    sends: list[float] = field(default_factory=list)
    checks: int = 0
    status: str = "pending"


class TwilioVerifyWire(WireServer):
    """Twilio Verify's SMS verifications, with a ledger of texted codes."""

    provider = "twilio-verify"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        service_sid: str = DEFAULT_SERVICE_SID,
        ttl: float = 600.0,
        max_sends: int = 5,
        max_checks: int = 5,
        **kwargs: Any,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.service_sid = service_sid
        self.ttl = ttl
        self.max_sends = max_sends
        self.max_checks = max_checks
        expected = f"{account_sid}:{auth_token}".encode()
        self._expected_auth = "Basic " + base64.b64encode(expected).decode("ascii")
        super().__init__(host, port, **kwargs)

    def _reset_provider_state(self) -> None:
        self._verifications: dict[str, _Verification] = {}

    # -- test helpers ------------------------------------------------------------

    def last_code(self, phone: str) -> str:
        """The code of the verification pending for `phone`."""
        with self._lock:
            return self._verifications[phone].code

    def age_code(self, phone: str, seconds: float) -> None:
        """Make `phone`'s verification `seconds` older (to expire it)."""
        with self._lock:
            entry = self._verifications[phone]
            entry.created -= seconds
            entry.sends = [t - seconds for t in entry.sends]

    # -- provider behaviour ------------------------------------------------------

    def _error_reply(
        self,
        status: int,
        code: int | str | None,
        message: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Reply:
        if code is None:
            code = {401: 20003, 404: 20404, 429: 20429}.get(status, 20500)
        code = int(code)
        if message is None:
            message = _MESSAGES.get(code, (status, f"Error {code}"))[1]
        return Reply.json(status, {"code": code, "message": message,
                                   "more_info": f"https://www.twilio.com/docs/errors/{code}",
                                   "status": status}, headers)

    def _parse_provider_step(self, token: str) -> Step | None:
        head, _, arg = token.partition(":")
        if head.isdigit() and len(head) == 3 and 400 <= int(head) <= 599:
            return Step("error", status=int(head), code=int(arg) if arg.isdigit() else None,
                        raw=token)
        if head.isdigit() and len(head) == 5 and not arg:
            return Step("error", status=_MESSAGES.get(int(head), (400, ""))[0], code=int(head),
                        raw=token)
        return None

    def _route(self, request: WireRequest) -> Reply | None:
        base = f"/v2/Services/{self.service_sid}/"
        kind = request.path[len(base):] if request.path.startswith(base) else None
        if request.header("Authorization") != self._expected_auth:
            self._count(UNAUTHORIZED, 401, request)
            return self._error_reply(401, 20003, None,
                                     [("WWW-Authenticate", 'Basic realm="Twilio API"')])
        if kind not in ("Verifications", "VerificationCheck") or request.method != "POST":
            self._count(NOT_FOUND, 404)
            return self._error_reply(404, 20404, f"The requested resource {request.path} "
                                                 "was not found")
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        to = form.get("To", "").strip()
        self._sleep(self._config.latency)
        step = self._decide([to], is_read=False)
        if step is not None and step.kind == "rate_limit":
            self._count(RATE_LIMITED, 429, request, recipient=to)
            return self._error_reply(429, 20429, None,
                                     [("Retry-After", self._retry_after_header(step.seconds))])
        if step is not None and step.kind == "error":
            self._count(REJECTED, step.status, request, recipient=to)
            return self._error_reply(step.status, step.code)
        if not (to.startswith("+") and to[1:].isdigit() and 7 <= len(to) <= 16):
            self._count(BAD_REQUEST, 400, request, recipient=to)
            return self._error_reply(400, 60200, "Invalid parameter `To`: " + to)
        if kind == "Verifications":
            return self._start(request, to, form.get("Channel", ""))
        return self._check(request, to, form.get("Code", ""))

    def _pending(self, to: str, now: float) -> _Verification | None:
        entry = self._verifications.get(to)
        if entry is None or entry.status != "pending" or now - entry.created > self.ttl:
            return None
        return entry

    def _start(self, request: WireRequest, to: str, channel: str) -> Reply | None:
        if channel != "sms":
            self._count(BAD_REQUEST, 400, request, recipient=to)
            return self._error_reply(400, 60200, "Invalid parameter `Channel`")
        now = time.time()
        with self._lock:
            entry = self._pending(to, now)
            if entry is None:
                entry = _Verification("VE" + uuid.uuid4().hex, to,
                                      f"{secrets.randbelow(10**6):06d}", now)
                self._verifications[to] = entry
            if len([t for t in entry.sends if now - t < 600]) >= self.max_sends:
                refused = True
            else:
                refused = False
                entry.sends.append(now)
        if refused:
            self._count(RATE_LIMITED, 429, request, recipient=to)
            return self._error_reply(429, 60203)
        sid = "SM" + uuid.uuid4().hex

        def build(seq: int) -> AcceptedSend:
            return AcceptedSend(
                seq=seq, provider=self.provider, id=sid, to=to, recipients=[to], from_=None,
                body=f"Your verification code is: {entry.code}", subject=None, html=None,
                idempotency_key=None, status_callback=None, messaging_service_sid=None,
                received_at=request.received_at, received_mono=request.received_mono,
                accepted_at=time.time(), fault=None, payload={"Channel": channel})

        self._record_send(build)
        self._count(ACCEPTED, 201, request, recipient=to, send_id=entry.sid)
        return Reply.json(201, self._resource(entry))

    def _check(self, request: WireRequest, to: str, code: str) -> Reply | None:
        now = time.time()
        with self._lock:
            entry = self._pending(to, now)
            outcome = "missing"
            if entry is not None:
                if entry.checks >= self.max_checks:
                    outcome = "locked"
                else:
                    entry.checks += 1
                    if secrets.compare_digest(entry.code.encode(), code.encode()):
                        entry.status = "approved"
                        outcome = "approved"
                    else:
                        outcome = "wrong"
            payload = None if entry is None else {**self._resource(entry),
                                                  "valid": outcome == "approved"}
        if outcome == "missing":
            self._count(NOT_FOUND, 404, request, recipient=to)
            return self._error_reply(404, 20404, "The requested resource /Services/"
                                                 f"{self.service_sid}/VerificationCheck "
                                                 "was not found")
        if outcome == "locked":
            self._count(RATE_LIMITED, 429, request, recipient=to)
            return self._error_reply(429, 60202)
        self._count(READ, 200, request, recipient=to)
        return Reply.json(200, payload)

    def _resource(self, entry: _Verification) -> dict[str, Any]:
        stamp = datetime.fromtimestamp(entry.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "sid": entry.sid, "service_sid": self.service_sid, "account_sid": self.account_sid,
            "to": entry.to, "channel": "sms", "status": entry.status,
            "valid": entry.status == "approved", "date_created": stamp, "date_updated": stamp,
            "lookup": {}, "amount": None, "payee": None, "sna": None,
            "send_code_attempts": [
                {"attempt_sid": "VL" + uuid.uuid5(uuid.NAMESPACE_OID, f"{entry.sid}{t}").hex,
                 "channel": "sms",
                 "time": datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")}
                for t in entry.sends],
            "url": f"https://verify.twilio.com/v2/Services/{self.service_sid}/Verifications/"
                   f"{entry.sid}",
        }
