"""Who texts the one-time code and checks it: Supabase Auth, Twilio Verify, or the console.

Each sender answers `send(phone, ip)` and `check(phone, code, ip)`; a check
that passes carries the session token. The limits regnotify keeps (sends
per number and per address, checks per number) are counted before a sender
is asked, the same way for every number whether it has an account or not
(see tasks.portal.limits and docs/security-limits.md); the console also
keeps its codes' lifetime and single use.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from tasks.auth.api_tokens import issue_session_token, verify_token
from tasks.exceptions import InvalidToken, ProviderConfigError
from tasks.masking import mask_phone
from tasks.portal import limits
from tasks.settings import Settings

log = logging.getLogger(__name__)

#: Seconds a session lasts (regnotify's own; Supabase's are its access token's).
SESSION_TTL_S = 3600
#: Sends per number (count, window seconds) regnotify allows for each sender:
#: no looser than the sender's own, so a number the sender does not know
#: (and so does not count) is refused exactly when a known one is.
SENDS_PER_NUMBER: dict[str, tuple[int, float]] = {
    # Supabase Auth: one text per number per sms_max_frequency (60 s by default).
    "supabase": (1, 60.0),
    # Twilio Verify: 5 sends per verification within 10 minutes (60203).
    "twilio": (5, 600.0),
    "console": (limits.SENDS_PER_NUMBER, limits.SENDS_PER_NUMBER_WINDOW_S),
}


class Outcome(Enum):
    SENT = "sent"
    OK = "ok"
    WRONG = "wrong"
    TOO_MANY = "too_many"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    #: The sender's own session (Supabase's); None with OK: regnotify makes one.
    token: str | None = None


class Sender(Protocol):
    name: str

    def send(self, phone: str, ip: str) -> Result: ...

    def check(self, phone: str, code: str, ip: str) -> Result: ...


class ConsoleSender:
    """Codes printed on the relay's output: for a relay on 127.0.0.1 only."""

    name = "console"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._codes: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def send(self, phone: str, ip: str) -> Result:
        code = f"{secrets.randbelow(10**6):06d}"
        with self._lock:
            self._codes[phone] = (_digest(code), time.monotonic() + limits.CODE_TTL_S)
            while len(self._codes) > limits.MAX_KEYS:
                self._codes.pop(next(iter(self._codes)))
        # The one place a code is shown: the operator's terminal, by design.
        print(f"sign-in code for {mask_phone(phone)}: {code}", flush=True)
        return Result(Outcome.SENT)

    def forget(self, phone: str) -> None:
        """Drop the number's code (its checks are used up)."""
        with self._lock:
            self._codes.pop(phone, None)

    def check(self, phone: str, code: str, ip: str) -> Result:
        with self._lock:
            stored = self._codes.get(phone)
            good = (stored is not None and time.monotonic() < stored[1]
                    and hmac.compare_digest(stored[0], _digest(code)))
            if good:
                del self._codes[phone]
        if not good:
            return Result(Outcome.WRONG)
        return Result(Outcome.OK)


class TwilioVerifySender:
    """Twilio Verify's SMS channel, through the official SDK."""

    name = "twilio"

    def __init__(self, settings: Settings) -> None:
        if not (settings.twilio_account_sid and settings.twilio_auth_token):
            raise ProviderConfigError("TWILIO_VERIFY_SERVICE_SID needs TWILIO_ACCOUNT_SID and "
                                      "TWILIO_AUTH_TOKEN")
        self._settings = settings
        self._service = settings.twilio_verify_service_sid
        self._local = threading.local()

    def _verify(self):  # type: ignore[no-untyped-def]
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            s = self._settings
            assert s.twilio_auth_token is not None
            client = Client(s.twilio_account_sid, s.twilio_auth_token.get_secret_value(),
                            http_client=TwilioHttpClient(timeout=s.provider_timeout_s),
                            environment={"_": ""})
            client.edge = None
            client.region = None
            if s.twilio_verify_base_url:
                client.verify.base_url = s.twilio_verify_base_url.rstrip("/")
            self._local.client = client
        return client.verify.v2.services(self._service)

    def send(self, phone: str, ip: str) -> Result:
        try:
            self._verify().verifications.create(to=phone, channel="sms")
        except TwilioRestException as exc:
            if exc.status == 429:  # 60203 max send attempts, 20429 too many requests
                return Result(Outcome.TOO_MANY)
            if exc.status == 400:
                # A number Twilio refuses gets the answer any number gets.
                return Result(Outcome.SENT)
            log.warning("portal: Twilio Verify refused a send (%s %s)", exc.status, exc.code)
            return Result(Outcome.UNAVAILABLE)
        except (TwilioException, requests.RequestException) as exc:
            log.warning("portal: Twilio Verify unreachable (%s)", type(exc).__name__)
            return Result(Outcome.UNAVAILABLE)
        return Result(Outcome.SENT)

    def check(self, phone: str, code: str, ip: str) -> Result:
        try:
            answer = self._verify().verification_checks.create(to=phone, code=code)
        except TwilioRestException as exc:
            if exc.status == 429:  # 60202 max check attempts
                return Result(Outcome.TOO_MANY)
            if exc.status == 404:  # expired, used, or never sent
                return Result(Outcome.WRONG)
            log.warning("portal: Twilio Verify refused a check (%s %s)", exc.status, exc.code)
            return Result(Outcome.UNAVAILABLE)
        except (TwilioException, requests.RequestException) as exc:
            log.warning("portal: Twilio Verify unreachable (%s)", type(exc).__name__)
            return Result(Outcome.UNAVAILABLE)
        if answer.status != "approved":
            return Result(Outcome.WRONG)
        return Result(Outcome.OK)


class SupabaseAuth:
    """Supabase Auth's HTTP door (`/auth/v1`), as the anon key reaches it: the customer
    page's phone codes and the staff console's e-mail codes both go through it."""

    def __init__(self, settings: Settings) -> None:
        assert settings.supabase_url and settings.supabase_anon_key
        self._timeout = settings.provider_timeout_s
        self._base = settings.supabase_url.rstrip("/") + "/auth/v1"
        key = settings.supabase_anon_key.get_secret_value()
        self._headers = {"apikey": key, "Authorization": f"Bearer {key}"}
        self._http = requests.Session()

    def post(self, path: str, body: dict[str, object], ip: str) -> requests.Response:
        # Sb-Forwarded-For: Supabase counts its per-IP limits by the person's
        # address (where the project enables the header), not the relay's.
        return self._http.post(f"{self._base}{path}", json=body,
                               headers={**self._headers, "Sb-Forwarded-For": ip},
                               timeout=self._timeout)


class SupabaseSender:
    """Supabase Auth's phone OTP; the session is Supabase's access token."""

    name = "supabase"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._post = SupabaseAuth(settings).post

    def send(self, phone: str, ip: str) -> Result:
        try:
            answer = self._post("/otp", {"phone": phone}, ip)
        except requests.RequestException as exc:
            log.warning("portal: Supabase Auth unreachable (%s)", type(exc).__name__)
            return Result(Outcome.UNAVAILABLE)
        if answer.status_code == 200:
            return Result(Outcome.SENT)
        if answer.status_code == 429:
            return Result(Outcome.TOO_MANY)
        if answer.status_code in (400, 422):
            # otp_disabled (no account, sign-ups off) or a refused number: the
            # customer gets the answer every number gets.
            return Result(Outcome.SENT)
        log.warning("portal: Supabase Auth refused a send (%s %s)", answer.status_code,
                    _error_code(answer))
        return Result(Outcome.UNAVAILABLE)

    def check(self, phone: str, code: str, ip: str) -> Result:
        try:
            answer = self._post("/verify", {"type": "sms", "phone": phone, "token": code}, ip)
        except requests.RequestException as exc:
            log.warning("portal: Supabase Auth unreachable (%s)", type(exc).__name__)
            return Result(Outcome.UNAVAILABLE)
        if answer.status_code == 429:
            return Result(Outcome.TOO_MANY)
        if answer.status_code in (400, 403, 422):  # otp_expired: wrong, used or expired
            return Result(Outcome.WRONG)
        if answer.status_code != 200:
            log.warning("portal: Supabase Auth refused a check (%s %s)", answer.status_code,
                        _error_code(answer))
            return Result(Outcome.UNAVAILABLE)
        token = str(answer.json().get("access_token", ""))
        try:
            verify_token(token, self._settings)
        except InvalidToken as exc:
            log.warning("portal: Supabase's session token fails the API's checks (%s); "
                        "check SUPABASE_URL and SUPABASE_JWT_SECRET", exc)
            return Result(Outcome.UNAVAILABLE)
        return Result(Outcome.OK, token)


def own_session(settings: Settings, phone: str, subject: str) -> str:
    """regnotify's session for a customer who proved `phone`.

    `subject` is the random id stored for the number (db.customer_subjects):
    never derived from the number, so nobody who sees it can work the number out.
    """
    return issue_session_token(settings, phone=phone, subject=subject, ttl_s=SESSION_TTL_S)


def choose_sender(settings: Settings, *, loopback: bool) -> Sender | None:
    """Supabase Auth, else Twilio Verify, else (loopback only) the console; None: none fits."""
    if settings.supabase_url and settings.supabase_anon_key:
        return SupabaseSender(settings)
    if settings.twilio_verify_service_sid:
        return TwilioVerifySender(settings)
    if loopback:
        return ConsoleSender(settings)
    return None


def _digest(code: str) -> bytes:
    return hashlib.sha256(code.encode()).digest()


def _error_code(answer: requests.Response) -> str:
    try:
        return str(answer.json().get("error_code") or "")[:64]
    except ValueError:
        return ""
