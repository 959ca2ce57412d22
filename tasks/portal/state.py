"""What the page keeps for one relay: settings, the code sender, limits, cookie keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import SecretStr
from sqlalchemy import Engine
from starlette.requests import Request

from tasks.portal import limits
from tasks.portal.signin import SENDS_PER_NUMBER, Sender, choose_sender
from tasks.settings import Settings

SESSION_COOKIE = "rn_session"
CSRF_COOKIE = "rn_csrf"
LANG_COOKIE = "rn_lang"
#: Over https the session and CSRF cookies are `__Host-` ones: the browser then takes it only
#: from this very origin, with Path=/ and Secure, so a sibling subdomain or a
#: plain-http page cannot plant one.
HOST_PREFIX = "__Host-"
#: Where the cookies live without the prefix (a plain-http relay on loopback).
PLAIN_PATH = "/portal"


@dataclass
class Portal:
    """The customer page of one relay, built with its app."""

    settings: Settings
    sender: Sender | None
    loopback: bool
    secure_cookies: bool
    csrf_key: bytes
    counters: limits.SigninCounters
    #: FORWARDED_ALLOW_IPS (None: every peer is trusted).
    trusted_proxies: list[limits.Network] | None
    engine: Callable[[], Engine]

    def client_ip(self, request: Request) -> str:
        """The customer's address (a trusted proxy's X-Forwarded-For, else the peer)."""
        return limits.client_address(request.client.host if request.client else None,
                                     request.headers.get("x-forwarded-for"),
                                     self.trusted_proxies)

    def may_send(self, phone: str, ip: str) -> bool:
        """Count a send for the address, then the number (every try counts)."""
        assert self.sender is not None
        if not self.counters.hit("ip", ip, limits.SENDS_PER_IP, limits.SENDS_PER_IP_WINDOW_S):
            return False
        limit, window = SENDS_PER_NUMBER[self.sender.name]
        return self.counters.hit("number", phone, limit, window)

    def may_check(self, phone: str) -> bool:
        """Count a check for the number: CHECKS_PER_CODE within the window, resends or not."""
        return self.counters.hit("check", phone, limits.CHECKS_PER_CODE, limits.CHECKS_WINDOW_S)

    def signed_in(self, phone: str) -> None:
        """A good code: the number's checks start again."""
        self.counters.clear("check", phone)

    def cookie_name(self, name: str) -> str:
        """A cookie's name as this portal sets and reads it (`__Host-` over https)."""
        return HOST_PREFIX + name if self._host_only(name) else name

    def cookie_path(self, name: str) -> str:
        # `__Host-` requires Path=/.
        return "/" if self._host_only(name) else PLAIN_PATH

    def _host_only(self, name: str) -> bool:
        # The language choice guards nothing; it keeps its plain name.
        return self.secure_cookies and name in (SESSION_COOKIE, CSRF_COOKIE)

    def _mac(self, purpose: bytes, value: str) -> str:
        return hmac.new(self.csrf_key, purpose + b"|" + value.encode(), hashlib.sha256).hexdigest()

    # CSRF. Signed in, the token is bound to the session cookie itself, which
    # another site can neither read nor plant a valid one of. Before sign-in
    # it is bound to a nonce the server made and signed: a nonce a client
    # invents (or one planted in a cookie without the server's mark) is
    # never adopted, a fresh one replaces it.
    def new_nonce(self) -> str:
        """A server-made nonce with the server's mark, for the CSRF cookie."""
        nonce = secrets.token_urlsafe(24)
        return f"{nonce}.{self._mac(b'nonce', nonce)}"

    def nonce_ok(self, cookie: str | None) -> bool:
        """Whether a CSRF cookie holds a nonce this server made."""
        nonce, _, mark = (cookie or "").partition(".")
        return bool(nonce and mark) and hmac.compare_digest(
            self._mac(b"nonce", nonce).encode(), mark.encode())

    def csrf_token(self, *, session: str | None, nonce: str | None) -> str:
        """The form token: bound to the session when there is one, else to the nonce."""
        if session:
            return self._mac(b"csrf-session",
                             hashlib.sha256(session.encode()).hexdigest())
        return self._mac(b"csrf-nonce", nonce or "")

    def csrf_ok(self, *, session: str | None, nonce: str | None, given: str | None) -> bool:
        if not given or (not session and not self.nonce_ok(nonce)):
            return False
        expected = self.csrf_token(session=session, nonce=nonce)
        return hmac.compare_digest(expected.encode(), given.encode())


def portal_for(request: Request) -> Portal:
    """The app's Portal, built with the app (tasks/relay/app.py)."""
    portal: Portal = request.app.state.portal
    return portal


def with_session_key(settings: Settings, *, loopback: bool) -> Settings:
    """The process's settings, with a session key of its own on a loopback relay without one.

    A relay on 127.0.0.1 (regnotify up, a laptop) without SESSION_SECRET signs
    the page's sessions with a key of this process: they end when it stops.
    Made once, before the relay and the page are built, so both hold the same
    settings object (the relay's /api then accepts the page's sessions too).
    """
    if not loopback or (settings.session_secret and settings.session_secret.get_secret_value()):
        return settings
    return settings.model_copy(update={"session_secret": SecretStr(secrets.token_urlsafe(32))})


def build_portal(settings: Settings, *, loopback: bool, engine: Callable[[], Engine]) -> Portal:
    """The page's state for one relay: its settings, whether it serves loopback only, its engine.

    `settings` is the relay's own object (after with_session_key): the page keeps
    no copy. Without a session key (not loopback, no SESSION_SECRET) the CSRF key
    is random per process and no session can be made.
    """
    secret = settings.session_secret.get_secret_value() if settings.session_secret else ""
    public = settings.portal_url or settings.relay_public_url or ""
    csrf_key = (hashlib.sha256(b"regnotify-portal-csrf|" + secret.encode()).digest()
                if secret else secrets.token_bytes(32))
    return Portal(
        settings=settings,
        sender=choose_sender(settings, loopback=loopback),
        loopback=loopback,
        secure_cookies=public.startswith("https://"),
        csrf_key=csrf_key,
        # Keyed by SESSION_SECRET, which every replica shares: they count alike.
        counters=limits.SigninCounters(
            settings, engine, hashlib.sha256(b"regnotify-signin-keys|" + csrf_key).digest()),
        trusted_proxies=limits.trusted_networks(settings.forwarded_allow_ips),
        engine=engine,
    )
