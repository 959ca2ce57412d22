"""Who e-mails a staff member's one-time code and checks it: Supabase Auth, the e-mail
provider, or (a relay on 127.0.0.1 with the console provider) one line on the relay's output.

Each sender answers `send(email, ip)` and `check(email, code, ip)`; a check
that passes carries the session token. Whether the address belongs to an
active member is asked before `send`, and every address's checks are counted
before `check` (tasks.staff.signin_routes), so a sender is only ever given
members' addresses and the limits answer alike for anyone.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import jwt
import requests
from sqlalchemy import Engine

from db.queries import query
from tasks.auth.api_tokens import AUDIENCE, OWN_ISSUER, verify_token
from tasks.exceptions import InvalidToken, RelayConfigError
from tasks.masking import mask_email as _mask_email
from tasks.portal import limits
from tasks.portal.signin import Outcome, Result, SupabaseAuth
from tasks.providers.base import Email, ProviderError
from tasks.settings import ProviderConfigError, Settings

log = logging.getLogger(__name__)

#: A staff session lasts a working day; removal from staff ends it sooner
#: (checked in SQL at every request).
STAFF_SESSION_TTL_S = 10 * 3600


class StaffSender(Protocol):
    name: str

    def send(self, email: str, ip: str) -> Result: ...

    def check(self, email: str, code: str, ip: str) -> Result: ...

    def forget(self, email: str) -> None: ...


def staff_subject(email: str) -> str:
    """A stable `sub` for a staff address (regnotify's own sessions have no user table)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "mailto:" + email))


def issue_staff_token(settings: Settings, email: str, ttl_s: int = STAFF_SESSION_TTL_S) -> str:
    """A token in Supabase's claim shape for a staff member who proved `email`.

    Admin (app_metadata.role = admin) only while the address is an active
    member: public.jwt_is_admin() checks that for every statement.
    """
    secret = settings.session_secret.get_secret_value() if settings.session_secret else ""
    if not secret:
        raise RelayConfigError("SESSION_SECRET is not set: set it (long and random) to sign "
                               "staff in")
    now = int(time.time())
    claims = {"sub": staff_subject(email), "role": "authenticated", "aud": AUDIENCE,
              "email": email, "app_metadata": {"role": "admin"}, "iat": now,
              "exp": now + ttl_s, "iss": OWN_ISSUER}
    return jwt.encode(claims, secret, algorithm="HS256")


def mask_email(email: str) -> str:
    return _mask_email(email) or "***"


class _OwnCodes:
    """Codes regnotify keeps itself: six digits, ten minutes, used once.

    Their digests live in the database (staff_sign_in_codes, owner only), so a
    code works on whichever relay replica the check reaches. The row's key and
    digest are keyed hashes: neither names the address nor gives the code away.
    How many checks an address gets is counted before (tasks.staff.signin_routes).
    """

    def __init__(self, settings: Settings, engine: Callable[[], Engine]) -> None:
        secret = settings.session_secret.get_secret_value() if settings.session_secret else ""
        self._key = hashlib.sha256(b"regnotify-staff-codes|" + secret.encode()).digest()
        self._engine = engine

    def _mac(self, what: str) -> bytes:
        return hmac.new(self._key, what.encode(), hashlib.sha256).digest()

    def new(self, email: str) -> str:
        code = f"{secrets.randbelow(10**6):06d}"
        with self._engine().begin() as conn:
            conn.exec_driver_sql(query("staff_code_put"), {
                "key": self._mac("address|" + email), "digest": self._mac(email + "|" + code),
                "ttl_s": limits.CODE_TTL_S})
        return code

    def check(self, email: str, code: str) -> Outcome:
        """OK once for the address's live code; WRONG otherwise (the code stays)."""
        with self._engine().begin() as conn:
            used = conn.exec_driver_sql(query("staff_code_take"), {
                "key": self._mac("address|" + email),
                "digest": self._mac(email + "|" + code)}).first()
        return Outcome.OK if used is not None else Outcome.WRONG

    def forget(self, email: str) -> None:
        """Drop the address's code (its checks are used up)."""
        with self._engine().begin() as conn:
            conn.exec_driver_sql(query("staff_code_forget"),
                                 {"key": self._mac("address|" + email)})


class ConsoleCodeSender:
    """The code on the relay's output: a relay on 127.0.0.1 with the console e-mail provider."""

    name = "console"

    def __init__(self, settings: Settings, engine: Callable[[], Engine]) -> None:
        self._settings = settings
        self._codes = _OwnCodes(settings, engine)

    def send(self, email: str, ip: str) -> Result:
        code = self._codes.new(email)
        # The one place a code is shown: the operator's terminal, by design.
        print(f"staff sign-in code for {mask_email(email)}: {code}", flush=True)
        return Result(Outcome.SENT)

    def check(self, email: str, code: str, ip: str) -> Result:
        outcome = self._codes.check(email, code)
        if outcome is not Outcome.OK:
            return Result(outcome)
        return Result(Outcome.OK, issue_staff_token(self._settings, email))

    def forget(self, email: str) -> None:
        self._codes.forget(email)


class EmailCodeSender:
    """The code by e-mail through the configured provider (Resend), from EMAIL_FROM."""

    name = "email"

    def __init__(self, settings: Settings, engine: Callable[[], Engine]) -> None:
        from tasks.providers.resend_email import ResendEmail

        self._settings = settings
        self._provider = ResendEmail(settings)
        self._codes = _OwnCodes(settings, engine)

    def send(self, email: str, ip: str) -> Result:
        code = self._codes.new(email)
        dealership = self._settings.dealership_name
        text = (f"Your sign-in code for {dealership}'s staff console is {code}.\n\n"
                "It works once, for ten minutes. If you did not ask for it, ignore this e-mail.")
        html = (f"<p>Your sign-in code for the staff console is <strong>{code}</strong>.</p>"
                "<p>It works once, for ten minutes. If you did not ask for it, ignore this "
                "e-mail.</p>")
        message = Email(to=email, subject=f"Staff console sign-in code: {code}", html=html,
                        text=text, idempotency_key=f"regnotify-staff-code-{secrets.token_hex(8)}",
                        tags=(("staff_sign_in", "1"),))
        try:
            self._provider.send(message)
        except ProviderError as exc:
            log.warning("staff: the sign-in e-mail was refused (%s)", exc.code)
            return Result(Outcome.UNAVAILABLE)
        return Result(Outcome.SENT)

    def check(self, email: str, code: str, ip: str) -> Result:
        outcome = self._codes.check(email, code)
        if outcome is not Outcome.OK:
            return Result(outcome)
        return Result(Outcome.OK, issue_staff_token(self._settings, email))

    def forget(self, email: str) -> None:
        self._codes.forget(email)


class SupabaseEmailSender:
    """Supabase Auth's e-mail OTP; the session is Supabase's access token (the member must
    have app_metadata.role = admin there)."""

    name = "supabase"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._post = SupabaseAuth(settings).post

    def send(self, email: str, ip: str) -> Result:
        try:
            # create_user false: a staff member's account is made in Supabase
            # (with app_metadata.role = admin), never by signing in.
            answer = self._post("/otp", {"email": email, "create_user": False}, ip)
        except requests.RequestException as exc:
            log.warning("staff: Supabase Auth unreachable (%s)", type(exc).__name__)
            return Result(Outcome.UNAVAILABLE)
        if answer.status_code == 200:
            return Result(Outcome.SENT)
        if answer.status_code == 429:
            return Result(Outcome.TOO_MANY)
        if answer.status_code in (400, 422):
            return Result(Outcome.SENT)  # no account there: the answer every address gets
        log.warning("staff: Supabase Auth refused a send (%s)", answer.status_code)
        return Result(Outcome.UNAVAILABLE)

    def check(self, email: str, code: str, ip: str) -> Result:
        try:
            answer = self._post("/verify", {"type": "email", "email": email, "token": code}, ip)
        except requests.RequestException as exc:
            log.warning("staff: Supabase Auth unreachable (%s)", type(exc).__name__)
            return Result(Outcome.UNAVAILABLE)
        if answer.status_code == 429:
            return Result(Outcome.TOO_MANY)
        if answer.status_code in (400, 403, 422):
            return Result(Outcome.WRONG)
        if answer.status_code != 200:
            log.warning("staff: Supabase Auth refused a check (%s)", answer.status_code)
            return Result(Outcome.UNAVAILABLE)
        token = str(answer.json().get("access_token", ""))
        try:
            verify_token(token, self._settings)
        except InvalidToken as exc:
            log.warning("staff: Supabase's session token fails the API's checks (%s)", exc)
            return Result(Outcome.UNAVAILABLE)
        return Result(Outcome.OK, token)

    def forget(self, email: str) -> None:
        """Supabase keeps its own codes (and their expiry)."""


def choose_staff_sender(settings: Settings, *, loopback: bool,
                        engine: Callable[[], Engine]) -> StaffSender | None:
    """Supabase Auth, else the e-mail provider, else (loopback, console e-mail) the relay's
    output; None: none fits (the sign-in page says so)."""
    if settings.supabase_url and settings.supabase_anon_key:
        return SupabaseEmailSender(settings)
    try:
        provider = settings.email_provider_name()
    except ProviderConfigError as exc:
        # The worker refuses to start over the same setting; the console says
        # sign-in is not set up rather than failing every page.
        log.warning("staff: no e-mail provider for sign-in codes (%s)", exc)
        return None
    if provider == "resend":
        return EmailCodeSender(settings, engine)
    if loopback:
        return ConsoleCodeSender(settings, engine)
    return None

