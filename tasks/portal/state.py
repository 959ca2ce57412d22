"""What the page keeps for one relay: settings, the code sender, limits, cookie keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass

from pydantic import SecretStr
from starlette.requests import Request

from tasks.portal import limits
from tasks.portal.signin import OWN_LIMITS, Sender, choose_sender
from tasks.settings import Settings

SESSION_COOKIE = "rn_session"
CSRF_COOKIE = "rn_csrf"
LANG_COOKIE = "rn_lang"

_lock = threading.Lock()


@dataclass
class Portal:
    settings: Settings
    sender: Sender | None
    loopback: bool
    secure_cookies: bool
    csrf_key: bytes
    sends_per_number: limits.SlidingWindow
    sends_per_ip: limits.SlidingWindow

    def own(self, limit: str) -> bool:
        """Whether regnotify keeps `limit` itself for this sender."""
        return self.sender is not None and limit in OWN_LIMITS[self.sender.name]

    def csrf_token(self, nonce: str) -> str:
        return hmac.new(self.csrf_key, b"csrf|" + nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, nonce: str | None, given: str | None) -> bool:
        if not nonce or not given:
            return False
        return hmac.compare_digest(self.csrf_token(nonce).encode(), given.encode())


def portal_for(request: Request) -> Portal:
    """The app's Portal, made on first use (after `regnotify relay` said where it binds)."""
    app = request.app
    found: Portal | None = getattr(app.state, "portal", None)
    if found is not None:
        return found
    with _lock:
        found = getattr(app.state, "portal", None)
        if found is None:
            found = _build(app.state.relay.settings, bool(getattr(app.state, "loopback", False)))
            app.state.portal = found
    return found


def _build(settings: Settings, loopback: bool) -> Portal:
    secret = settings.session_secret.get_secret_value() if settings.session_secret else ""
    if not secret and loopback:
        # A relay on 127.0.0.1 (regnotify up) without SESSION_SECRET: sessions
        # signed with a key of this process; they end when it stops.
        secret = secrets.token_urlsafe(32)
        settings = settings.model_copy(update={"session_secret": SecretStr(secret)})
    public = settings.portal_url or settings.relay_public_url or ""
    return Portal(
        settings=settings,
        sender=choose_sender(settings, loopback=loopback),
        loopback=loopback,
        secure_cookies=public.startswith("https://"),
        csrf_key=hashlib.sha256(b"regnotify-portal-csrf|" + secret.encode()).digest()
        if secret else secrets.token_bytes(32),
        sends_per_number=limits.SlidingWindow(limits.SENDS_PER_NUMBER,
                                              limits.SENDS_PER_NUMBER_WINDOW_S),
        sends_per_ip=limits.SlidingWindow(limits.SENDS_PER_IP, limits.SENDS_PER_IP_WINDOW_S),
    )
