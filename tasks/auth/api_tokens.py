"""Bearer tokens of the API: Supabase's (JWKS or the legacy secret) and regnotify's own.

Every check is PyJWT's; this module only chooses the key and the expected
issuer. Which of the checks failed stays in the exception's text for the one
log line and never reaches the client.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import jwt

from tasks.auth.jwks_keys import JwksKeys
from tasks.exceptions import InvalidToken, RelayConfigError
from tasks.settings import Settings

#: Seconds of clock skew forgiven on exp/iat/nbf.
LEEWAY_S = 30
AUDIENCE = "authenticated"
#: The `iss` of regnotify's own tokens.
OWN_ISSUER = "regnotify"
#: Supabase signs with ES256 (new projects) or RS256 (imported keys) under JWKS.
ASYMMETRIC = frozenset({"ES256", "RS256"})
#: The database roles a request may run as (db.as_caller refuses any other).
ROLES = frozenset({"anon", "authenticated", "service_role"})
#: Supabase's edge caches the JWKS for 10 minutes, so a new key can take that
#: long to appear anyway; keeping ours as long costs nothing.
JWKS_LIFESPAN_S = 600
JWKS_TIMEOUT_S = 5

_clients: dict[tuple[str, float], JwksKeys] = {}
_clients_lock = threading.Lock()


def supabase_issuer(supabase_url: str) -> str:
    """The `iss` Supabase Auth writes into a project's tokens."""
    return supabase_url.rstrip("/") + "/auth/v1"


def jwks_url(supabase_url: str) -> str:
    return supabase_issuer(supabase_url) + "/.well-known/jwks.json"


def _jwks_client(settings: Settings) -> JwksKeys:
    assert settings.supabase_url
    key = (jwks_url(settings.supabase_url), settings.supabase_jwks_cooldown_s)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = JwksKeys(key[0], lifespan_s=JWKS_LIFESPAN_S, timeout_s=JWKS_TIMEOUT_S,
                              cooldown_s=key[1])
            _clients[key] = client
        return client


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None and value.get_secret_value() else None


def verify_token(token: str, settings: Settings) -> dict[str, Any]:
    """The token's claims once every check passed; InvalidToken otherwise."""
    try:
        claims = _verify(token, settings)
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"{type(exc).__name__}: {exc}") from None
    if claims.get("role") not in ROLES:
        raise InvalidToken("role claim is not anon, authenticated or service_role")
    if claims.get("iss") == OWN_ISSUER and claims.get("role") != "authenticated":
        # regnotify only ever issues `authenticated` tokens; any other role in
        # one is a forgery with a leaked secret, or a bug: never service_role.
        raise InvalidToken("regnotify's own tokens carry role authenticated only")
    return claims


def _verify(token: str, settings: Settings) -> dict[str, Any]:
    header = jwt.get_unverified_header(token)
    alg = header.get("alg")
    options = {"require": ["exp", "aud"]}
    if alg in ASYMMETRIC:
        if not settings.supabase_url:
            raise InvalidToken(f"{alg} token but SUPABASE_URL is not set")
        signing_key = _jwks_client(settings).signing_key(header.get("kid"))
        # The key decides the algorithm, never the token's header alone.
        if signing_key.algorithm_name not in ASYMMETRIC:
            raise InvalidToken(f"JWKS key {header.get('kid')!r} is not ES256/RS256")
        return jwt.decode(token, signing_key.key, algorithms=[signing_key.algorithm_name],
                          audience=AUDIENCE, issuer=supabase_issuer(settings.supabase_url),
                          leeway=LEEWAY_S, options=options)
    if alg != "HS256":
        raise InvalidToken(f"algorithm {alg!r} is not accepted")
    # Which secret to try is chosen from the unverified issuer; the issuer is
    # then verified along with the signature, so a forged one gains nothing.
    unverified = jwt.decode(token, options={"verify_signature": False})
    if unverified.get("iss") == OWN_ISSUER:
        secret, issuer = _secret(settings.session_secret), OWN_ISSUER
    else:
        secret = _secret(settings.supabase_jwt_secret)
        issuer = supabase_issuer(settings.supabase_url) if settings.supabase_url else None
    if secret is None:
        raise InvalidToken("HS256 token but no secret is configured for its issuer")
    return jwt.decode(token, secret, algorithms=["HS256"], audience=AUDIENCE, issuer=issuer,
                      leeway=LEEWAY_S, options=options)


def issue_session_token(settings: Settings, *, phone: str, subject: str,
                        ttl_s: int = 3600) -> str:
    """A token in Supabase's claim shape for a customer who proved `phone` (E.164)."""
    secret = _secret(settings.session_secret)
    if secret is None:
        raise RelayConfigError("SESSION_SECRET is not set: set it (long and random) to sign "
                               "customers in")
    now = int(time.time())
    claims = {"sub": subject, "role": "authenticated", "aud": AUDIENCE,
              "phone": phone.lstrip("+"), "iat": now, "exp": now + ttl_s, "iss": OWN_ISSUER}
    return jwt.encode(claims, secret, algorithm="HS256")
