"""The API's bearer tokens, verified by PyJWT with real keys and secrets."""

from __future__ import annotations

import time

import jwt
import pytest

from tasks.auth.api_tokens import issue_session_token, verify_token
from tasks.exceptions import InvalidToken
from tasks.settings import Settings
from tests.jwks_server import JwksServer, SigningKey, supabase_claims

SESSION = "s" * 40
LEGACY = "l" * 40
SUPABASE = "http://127.0.0.1:9"


def settings(**extra) -> Settings:
    values = {"session_secret": SESSION, "supabase_jwt_secret": LEGACY,
              "supabase_url": SUPABASE, **extra}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def claims(**extra) -> dict:
    now = int(time.time())
    return {"sub": "user-1", "role": "authenticated", "aud": "authenticated",
            "phone": "15551230001", "iat": now, "exp": now + 600,
            "iss": SUPABASE + "/auth/v1", **extra}


def test_own_token_carries_supabase_claim_shape():
    token = issue_session_token(settings(), phone="+15551230001", subject="cust-1")
    got = verify_token(token, settings())
    assert got["phone"] == "15551230001"
    assert (got["sub"], got["role"], got["aud"], got["iss"]) == (
        "cust-1", "authenticated", "authenticated", "regnotify")
    assert 3590 <= got["exp"] - got["iat"] <= 3600


def test_legacy_supabase_secret_is_accepted():
    token = jwt.encode(claims(), LEGACY, algorithm="HS256")
    assert verify_token(token, settings())["sub"] == "user-1"


@pytest.mark.parametrize("token", [
    pytest.param(jwt.encode(claims(exp=int(time.time()) - 120), LEGACY, algorithm="HS256"),
                 id="expired"),
    pytest.param(jwt.encode(claims(aud="anon"), LEGACY, algorithm="HS256"), id="wrong-aud"),
    pytest.param(jwt.encode(claims(), "x" * 40, algorithm="HS256"), id="wrong-secret"),
    pytest.param(jwt.encode(claims(), None, algorithm="none"), id="alg-none"),
    pytest.param(jwt.encode(claims(iss="https://other.supabase.co/auth/v1"), LEGACY,
                            algorithm="HS256"), id="wrong-iss"),
    pytest.param(jwt.encode(claims(iss="regnotify"), LEGACY, algorithm="HS256"),
                 id="own-issuer-wrong-secret"),
    pytest.param(jwt.encode(claims(role="postgres"), LEGACY, algorithm="HS256"),
                 id="role-postgres"),
    pytest.param("not.a.jwt", id="garbage"),
])
def test_refused(token):
    with pytest.raises(InvalidToken):
        verify_token(token, settings())


def test_own_token_refused_without_session_secret():
    token = issue_session_token(settings(), phone="+15551230001", subject="cust-1")
    with pytest.raises(InvalidToken):
        verify_token(token, settings(session_secret=None))


# ── Supabase's signing keys (JWKS) ───────────────────────────────────────────


@pytest.fixture()
def jwks():
    server = JwksServer(keys=[SigningKey.es256()]).start()
    yield server
    server.stop()


def jwks_settings(server: JwksServer, **extra) -> Settings:
    # No cooldown: every unknown kid may refetch (the rotation test needs it
    # at once; test_made_up_kids_cannot_flood_the_jwks_endpoint the default).
    return settings(supabase_url=server.url, supabase_jwks_cooldown_s=0, **extra)


def test_es256_token_from_the_jwks(jwks):
    got = verify_token(jwks.token(jwks.keys[0], sub="u-es"), jwks_settings(jwks))
    assert (got["sub"], got["phone"]) == ("u-es", "15551230001")


def test_rs256_token_from_the_jwks(jwks):
    rsa_key = SigningKey.rs256()
    jwks.keys = [rsa_key]
    assert verify_token(jwks.token(rsa_key, sub="u-rs"), jwks_settings(jwks))["sub"] == "u-rs"


def test_keys_are_cached(jwks):
    for _ in range(5):
        verify_token(jwks.token(jwks.keys[0]), jwks_settings(jwks))
    assert jwks.fetches == 1


def test_rotation_new_kid_appears_and_the_old_one_goes(jwks):
    old, new = jwks.keys[0], SigningKey.es256()
    old_token = jwks.token(old)
    assert verify_token(old_token, jwks_settings(jwks))
    # Supabase rotates: the new key is published, then the old one revoked.
    jwks.keys = [new]
    assert verify_token(jwks.token(new, sub="after"), jwks_settings(jwks))["sub"] == "after"
    assert jwks.fetches == 2  # the unknown kid fetched the set again
    with pytest.raises(InvalidToken):
        verify_token(old_token, jwks_settings(jwks))


def test_made_up_kids_cannot_flood_the_jwks_endpoint(jwks):
    strict = settings(supabase_url=jwks.url)  # the default cooldown
    verify_token(jwks.token(jwks.keys[0]), strict)
    stranger = SigningKey.es256()
    for _ in range(5):
        with pytest.raises(InvalidToken):
            verify_token(jwks.token(stranger), strict)
    assert jwks.fetches <= 2


def _hs256_with_public_key(server: JwksServer) -> str:
    # The classic confusion: HMAC keyed with the published key's bytes.
    # PyJWT itself refuses a PEM as an HMAC key, so sign by hand here.
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    public = json.dumps(server.keys[0].public_jwk()).encode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": server.keys[0].kid}).encode())
    body = b64(json.dumps(supabase_claims(server.issuer)).encode())
    sig = b64(hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


@pytest.mark.parametrize("case", ["expired", "wrong-aud", "wrong-signature", "alg-none",
                                  "hs256-with-public-key", "unknown-kid", "wrong-iss",
                                  "no-kid"])
def test_jwks_refusals(jwks, case):
    key = jwks.keys[0]
    if case == "expired":
        token = jwks.token(key, exp=int(time.time()) - 120)
    elif case == "wrong-aud":
        token = jwks.token(key, aud="anon")
    elif case == "wrong-signature":
        impostor = SigningKey.es256()
        impostor.kid = key.kid
        token = jwks.token(impostor)
    elif case == "alg-none":
        token = jwt.encode(supabase_claims(jwks.issuer), None, algorithm="none",
                           headers={"kid": key.kid})
    elif case == "hs256-with-public-key":
        token = _hs256_with_public_key(jwks)
    elif case == "unknown-kid":
        token = jwks.token(SigningKey.es256())
    elif case == "wrong-iss":
        token = jwks.token(key, iss="https://someone-else.supabase.co/auth/v1")
    else:
        token = jwt.encode(supabase_claims(jwks.issuer), key.private, algorithm="ES256")
    with pytest.raises(InvalidToken):
        verify_token(token, jwks_settings(jwks))
    # Nor with the legacy secret unset (the HS256 path then has no key at all).
    with pytest.raises(InvalidToken):
        verify_token(token, jwks_settings(jwks, supabase_jwt_secret=None))


def test_portal_url_defaults_under_the_relay_and_origins_split():
    s = settings(relay_public_url="https://relay.example/", api_allowed_origins=
                 " https://a.example/ ,https://b.example,, ")
    assert s.portal_url == "https://relay.example/portal"
    assert s.api_origins() == ["https://a.example", "https://b.example"]
    assert settings(relay_public_url="https://r.example", portal_url="https://p.example/"
                    ).portal_url == "https://p.example"
    assert settings().portal_url is None and settings().api_origins() == []
