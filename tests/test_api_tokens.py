"""The API's bearer tokens, verified by PyJWT with real keys and secrets."""

from __future__ import annotations

import time

import jwt
import pytest

from tasks.api_tokens import issue_session_token, verify_token
from tasks.exceptions import InvalidToken
from tasks.settings import Settings

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
