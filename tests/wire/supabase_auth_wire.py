"""A fake of Supabase Auth's phone sign-in (GoTrue): ``POST /auth/v1/otp`` and
``POST /auth/v1/verify``, with the limits a hosted project has.

What it does as GoTrue does:

- ``apikey`` header must be the project's anon key (else 401, as Kong answers);
- ``/otp`` ``{"phone"}`` texts a 6-digit code (the ledger's send; its body has
  the code) and answers ``{"message_id"}``; a second send to the same number
  within ``sms_max_frequency`` seconds is ``429 over_sms_send_rate_limit``;
- ``/otp`` and ``/verify`` are limited per client IP (``over_request_rate_limit``);
  the IP is ``Sb-Forwarded-For`` when the project enables that header, else
  the caller's address (one bucket for everyone behind one relay);
- ``/verify`` ``{"type": "sms", "phone", "token"}``: a code works once and for
  ``otp_expiry`` seconds; anything else is ``403 otp_expired``; a wrong code
  does not use the code up (GoTrue counts nothing per code);
- a number without an account when sign-ups are off: ``422 otp_disabled``;
- the session is an HS256 access token with Supabase's claims, signed with
  ``jwt_secret`` (a project on the legacy secret).

Error bodies are GoTrue's: ``{"code", "error_code", "msg"}``. Scripts
(``429``, ``NNN``, ``NNN:error_code``) apply to the next request for a number.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

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

DEFAULT_ANON_KEY = "wire-anon-key-" + "a" * 24
DEFAULT_JWT_SECRET = "wire-supabase-jwt-secret-at-least-32-bytes"

_MESSAGES = {
    "otp_expired": (403, "Token has expired or is invalid"),
    "over_sms_send_rate_limit": (429, "For security purposes, you can only request this "
                                      "after {n} seconds."),
    "over_request_rate_limit": (429, "Request rate limit reached"),
    "otp_disabled": (422, "Signups not allowed for otp"),
    "validation_failed": (400, "Invalid phone number format (E.164 required)"),
    "sms_send_failed": (500, "Error sending sms OTP"),
}


@dataclass
class _Code:
    code: str
    sent_at: float
    used: bool = False


class SupabaseAuthWire(WireServer):
    """Supabase Auth's phone OTP endpoints with a ledger of texted codes."""

    provider = "supabase-auth"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        anon_key: str = DEFAULT_ANON_KEY,
        jwt_secret: str = DEFAULT_JWT_SECRET,
        otp_expiry: float = 600.0,
        sms_max_frequency: float = 60.0,
        otp_ip_limit: int = 30,
        verify_ip_limit: int = 30,
        sb_forwarded_for: bool = True,
        allow_signups: bool = True,
        **kwargs: Any,
    ) -> None:
        self.anon_key = anon_key
        self.jwt_secret = jwt_secret
        self.otp_expiry = otp_expiry
        self.sms_max_frequency = sms_max_frequency
        self.otp_ip_limit = otp_ip_limit
        self.verify_ip_limit = verify_ip_limit
        self.sb_forwarded_for = sb_forwarded_for
        self.allow_signups = allow_signups
        super().__init__(host, port, **kwargs)

    def _reset_provider_state(self) -> None:
        self._codes: dict[str, _Code] = {}
        self._users: dict[str, str] = {}
        self._ip_hits: dict[tuple[str, str], deque[float]] = {}
        self.client_ips: list[str] = []
        # E-mail OTP (the staff console): accounts keyed "email:<address>", and
        # which of them have app_metadata.role = admin.
        self._admins: set[str] = set()

    # -- test helpers ------------------------------------------------------------

    def last_code(self, phone: str) -> str:
        """The code last texted to `phone` (what the customer reads on their phone)."""
        with self._lock:
            return self._codes[_digits(phone)].code

    def age_code(self, phone: str, seconds: float) -> None:
        """Make the code texted to `phone` `seconds` older (to expire it)."""
        with self._lock:
            self._codes[_digits(phone)].sent_at -= seconds

    def add_user(self, phone: str) -> str:
        """An existing account for `phone` (sign-ups may then be off); its id."""
        with self._lock:
            return self._users.setdefault(_digits(phone), str(uuid.uuid4()))

    def add_email_user(self, email: str, *, admin: bool = False) -> str:
        """An existing e-mail account (GoTrue's e-mail OTP); `admin`: app_metadata.role."""
        key = "email:" + email.strip().lower()
        with self._lock:
            if admin:
                self._admins.add(key)
            return self._users.setdefault(key, str(uuid.uuid4()))

    def last_email_code(self, email: str) -> str:
        """The code last e-mailed to `email`."""
        with self._lock:
            return self._codes["email:" + email.strip().lower()].code

    # -- provider behaviour ------------------------------------------------------

    def _error_reply(
        self,
        status: int,
        code: int | str | None,
        message: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Reply:
        name = str(code) if code else ("unexpected_failure" if status >= 500 else "bad_request")
        if message is None:
            message = _MESSAGES.get(name, (status, f"error {name}"))[1].replace("{n}", "60")
        return Reply.json(status, {"code": status, "error_code": name, "msg": message},
                          headers)

    def _parse_provider_step(self, token: str) -> Step | None:
        head, _, arg = token.partition(":")
        if head.isdigit() and len(head) == 3 and 400 <= int(head) <= 599:
            return Step("error", status=int(head), code=arg or None, raw=token)
        if head in _MESSAGES and not arg:
            return Step("error", status=_MESSAGES[head][0], code=head, raw=token)
        return None

    def _route(self, request: WireRequest) -> Reply | None:
        if request.path not in ("/auth/v1/otp", "/auth/v1/verify") or request.method != "POST":
            self._count(NOT_FOUND, 404)
            return Reply.json(404, {"message": "no Route matched with those values"})
        if request.header("apikey") != self.anon_key:
            self._count(UNAUTHORIZED, 401, request)
            return Reply.json(401, {"message": "Invalid API key"})
        try:
            body = request.json() or {}
            email = str(body.get("email", "") or "").strip().lower()
            # An e-mail OTP is keyed "email:<address>" where a phone is keyed by digits.
            phone = "email:" + email if email else _digits(str(body.get("phone", "")))
        except (ValueError, AttributeError):
            self._count(BAD_REQUEST, 400, request)
            return self._error_reply(400, "bad_json", "Could not parse request body as JSON")
        ip = self._client_ip(request)
        with self._lock:
            self.client_ips.append(ip)
        self._sleep(self._config.latency)
        if request.path == "/auth/v1/otp":
            return self._otp(request, phone, ip, body.get("create_user", True) is not False)
        return self._verify(request, phone, str(body.get("token", "")), ip, body.get("type"))

    def _client_ip(self, request: WireRequest) -> str:
        forwarded = request.header("Sb-Forwarded-For")
        if self.sb_forwarded_for and forwarded:
            return forwarded.split(",")[0].strip()
        return "peer"

    def _over_ip_limit(self, kind: str, ip: str, limit: int, window: float) -> bool:
        now = time.monotonic()
        with self._lock:
            hits = self._ip_hits.setdefault((kind, ip), deque())
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                return True
            hits.append(now)
            return False

    def _scripted(self, request: WireRequest, phone: str) -> Reply | None:
        step = self._decide(["+" + phone], is_read=False)
        if step is None or step.kind in ("accept", "latency"):
            if step is not None and step.kind == "latency":
                self._sleep(step.seconds)
            return None
        if step.kind == "rate_limit":
            self._count(RATE_LIMITED, 429, request, recipient=phone)
            return self._error_reply(429, "over_request_rate_limit", None,
                                     [("Retry-After", self._retry_after_header(step.seconds))])
        if step.kind == "drop":
            return None
        self._count(REJECTED, step.status, request, recipient=phone)
        return self._error_reply(step.status, step.code)

    def _otp(self, request: WireRequest, phone: str, ip: str,
             create_user: bool = True) -> Reply | None:
        scripted = self._scripted(request, phone)
        if scripted is not None:
            return scripted
        if self._over_ip_limit("otp", ip, self.otp_ip_limit, 3600.0):
            self._count(RATE_LIMITED, 429, request, recipient=phone)
            return self._error_reply(429, "over_request_rate_limit")
        is_email = phone.startswith("email:")
        if not is_email and not 7 <= len(phone) <= 15:
            self._count(REJECTED, 400, request, recipient=phone)
            return self._error_reply(400, "validation_failed")
        now = time.time()
        with self._lock:
            known = phone in self._users
            last = self._codes.get(phone)
        if not known and (not self.allow_signups or (is_email and not create_user)):
            self._count(REJECTED, 422, request, recipient=phone)
            return self._error_reply(422, "otp_disabled")
        if last is not None and now - last.sent_at < self.sms_max_frequency:
            wait = int(self.sms_max_frequency - (now - last.sent_at)) + 1
            self._count(RATE_LIMITED, 429, request, recipient=phone)
            return self._error_reply(429, "over_sms_send_rate_limit",
                                     _MESSAGES["over_sms_send_rate_limit"][1].replace(
                                         "{n}", str(wait)))
        code = f"{secrets.randbelow(10**6):06d}"
        sid = "SM" + uuid.uuid4().hex

        to = phone[len("email:"):] if is_email else "+" + phone

        def build(seq: int) -> AcceptedSend:
            return AcceptedSend(
                seq=seq, provider=self.provider, id=sid, to=to, recipients=[to],
                from_=None, body=f"Your code is {code}", subject=None, html=None,
                idempotency_key=None, status_callback=None, messaging_service_sid=None,
                received_at=request.received_at, received_mono=request.received_mono,
                accepted_at=time.time(), fault=None, payload={"ip": ip})

        with self._lock:
            self._users.setdefault(phone, str(uuid.uuid4()))
            self._codes[phone] = _Code(code, now)
        self._record_send(build)
        self._count(ACCEPTED, 200, request, recipient="+" + phone, send_id=sid)
        return Reply.json(200, {"message_id": sid})

    def _verify(self, request: WireRequest, phone: str, token: str, ip: str,
                kind: Any) -> Reply | None:
        scripted = self._scripted(request, phone)
        if scripted is not None:
            return scripted
        if self._over_ip_limit("verify", ip, self.verify_ip_limit, 300.0):
            self._count(RATE_LIMITED, 429, request, recipient=phone)
            return self._error_reply(429, "over_request_rate_limit")
        if kind not in (("email", "magiclink") if phone.startswith("email:")
                        else ("sms", "phone_change")):
            self._count(BAD_REQUEST, 400, request, recipient=phone)
            return self._error_reply(400, "validation_failed",
                                     "Verify requires a verification type")
        now = time.time()
        with self._lock:
            entry = self._codes.get(phone)
            ok = (entry is not None and not entry.used and now - entry.sent_at <= self.otp_expiry
                  and secrets.compare_digest(entry.code.encode(), token.encode()))
            if ok and entry is not None:
                entry.used = True
            user_id = self._users.get(phone)
        if not ok or user_id is None:
            self._count(REJECTED, 403, request, recipient=phone)
            return self._error_reply(403, "otp_expired")
        self._count(READ, 200, request, recipient=phone)
        return Reply.json(200, self._session(phone, user_id))

    def _session(self, phone: str, user_id: str) -> dict[str, Any]:
        now = int(time.time())
        session_id = str(uuid.uuid4())
        email = phone[len("email:"):] if phone.startswith("email:") else ""
        app_metadata: dict[str, Any] = ({"provider": "email", "providers": ["email"]} if email
                                        else {"provider": "phone", "providers": ["phone"]})
        if phone in self._admins:
            app_metadata["role"] = "admin"
        phone = "" if email else phone
        claims = {
            "iss": f"{self.url}/auth/v1", "sub": user_id, "aud": "authenticated",
            "exp": now + 3600, "iat": now, "email": email, "phone": phone,
            "app_metadata": app_metadata,
            "user_metadata": {}, "role": "authenticated", "aal": "aal1",
            "amr": [{"method": "otp", "timestamp": now}], "session_id": session_id,
            "is_anonymous": False,
        }
        token = jwt.encode(claims, self.jwt_secret, algorithm="HS256")
        return {
            "access_token": token, "token_type": "bearer", "expires_in": 3600,
            "expires_at": now + 3600, "refresh_token": secrets.token_urlsafe(12),
            "user": {"id": user_id, "aud": "authenticated", "role": "authenticated",
                     "phone": phone,
                     "phone_confirmed_at": datetime.now(UTC).isoformat(),
                     "app_metadata": claims["app_metadata"], "user_metadata": {}},
        }


def _digits(phone: str) -> str:
    # GoTrue stores numbers without the '+' and accepts them either way.
    return "".join(ch for ch in phone if ch.isdigit())
