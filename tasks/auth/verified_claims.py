"""The claims of bearer tokens PyJWT already verified, kept until they expire.

A customer's page or an admin app sends the same token on every request;
checking its signature each time was a tenth of an API request's CPU. A
token is verified by tasks.auth.api_tokens.verify_token (PyJWT) the first time;
then its claims are served from here, keyed by the exact token and by the
settings that verified it (a relay with other secrets never sees another's
entries), until the earliest of: the token's `exp`, MAX_AGE_S after the check
(so a key withdrawn from the JWKS stops counting within minutes, as the JWKS
cache itself allows), or eviction (the oldest go first past MAX_ENTRIES).
Refusals are never kept: a bad token is checked, and refused, every time.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from typing import Any

from starlette.concurrency import run_in_threadpool

from tasks.auth.api_tokens import verify_token
from tasks.settings import Settings

#: Tokens remembered at once (a few hundred bytes each).
MAX_ENTRIES = 10_000
#: The longest a verification is trusted without checking again.
MAX_AGE_S = 300.0

_Key = tuple[str, bytes]


class ClaimsCache:
    """Verified claims by (token, settings fingerprint), with an expiry each; thread-safe."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_age_s: float = MAX_AGE_S) -> None:
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._entries: OrderedDict[_Key, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _Key) -> dict[str, Any] | None:
        now = time.time()
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if now >= found[0]:
                del self._entries[key]
                return None
            return dict(found[1])

    def put(self, key: _Key, claims: dict[str, Any]) -> None:
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            return  # verify_token requires exp; nothing to bound an entry by otherwise
        until = min(float(exp), time.time() + self.max_age_s)
        with self._lock:
            self._entries[key] = (until, dict(claims))
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_cache = ClaimsCache()


def _fingerprint(settings: Settings) -> bytes:
    """What decides whether a token verifies: the secrets and the issuer's URL."""
    parts = [settings.supabase_url or "", str(settings.supabase_jwks_cooldown_s)]
    for secret in (settings.session_secret, settings.supabase_jwt_secret):
        parts.append(secret.get_secret_value() if secret is not None else "")
    return hashlib.sha256("\0".join(parts).encode()).digest()


def verify_cached(token: str, settings: Settings) -> dict[str, Any]:
    """verify_token's answer, from the cache when this token was verified already."""
    key = (token, _fingerprint(settings))
    claims = _cache.get(key)
    if claims is None:
        claims = verify_token(token, settings)  # InvalidToken propagates; never cached
        _cache.put(key, claims)
    return claims


async def verified_claims(token: str, settings: Settings) -> dict[str, Any]:
    """verify_cached for the event loop: a first check runs in a thread (it may fetch the JWKS)."""
    key = (token, _fingerprint(settings))
    claims = _cache.get(key)
    if claims is None:
        claims = await run_in_threadpool(verify_token, token, settings)
        _cache.put(key, claims)
    return claims
