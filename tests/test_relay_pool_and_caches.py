"""The relay's speed parts: the API pool opened by the lifespan, the verified-claims cache,
and /healthz answering from probes at most a second old."""

from __future__ import annotations

import time

import jwt
import pytest
from starlette.testclient import TestClient

from tasks.auth.api_tokens import issue_session_token
from tasks.auth.verified_claims import ClaimsCache, verify_cached
from tasks.exceptions import InvalidToken
from tasks.relay import create_app
from tests.pg import new_registration
from tests.portal_helpers import SESSION_COOKIE
from tests.relay_helpers import relay_settings

pytest_plugins = ["tests.relay_helpers"]

SESSION = "session-secret-for-the-cache-tests-0123456789"
PHONE = "+15554440001"


def test_the_api_runs_on_the_pool_the_lifespan_opens(clean_db, redis_server, conn):
    reg = new_registration(conn, customer_phone=PHONE, vehicle_make="Ford")
    new_registration(conn, customer_phone="+15554440002")
    settings = relay_settings(database_url=clean_db, celery_broker_url=redis_server.url,
                              session_secret=SESSION, relay_listen=False,
                              relay_self_tick="off", relay_db_pool_size=3)
    token = issue_session_token(settings, phone=PHONE, subject="cust-a")
    app = create_app(settings)
    relay = app.state.relay
    with TestClient(app) as client:
        pool = relay.caller_pool()._pool
        assert pool is not None and pool.max_size == 3
        for _ in range(5):
            got = client.get("/api/me/registrations", headers={"Authorization": f"Bearer {token}"})
            assert got.status_code == 200
            assert [r["id"] for r in got.json()["registrations"]] == [reg]
        assert pool.get_stats()["requests_num"] >= 5
        timeline = client.get(f"/api/registrations/{reg}/timeline",
                              headers={"Authorization": f"Bearer {token}"})
        assert timeline.status_code == 200 and timeline.json()["registration_id"] == reg
        client.cookies.set(SESSION_COOKIE, token)
        page = client.get("/portal")
        assert page.status_code == 200 and "Ford" in page.text
    assert relay.caller_pool()._pool is None  # closed with the lifespan


def test_healthz_answers_from_probes_at_most_a_second_old(clean_db, redis_server):
    settings = relay_settings(database_url=clean_db, celery_broker_url=redis_server.url,
                              relay_listen=False, relay_self_tick="off")
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        probes = app.state.health_probes
        first = probes.taken_at
        assert client.get("/healthz").json()["database"] == "ok"
        assert probes.taken_at == first  # the same probes
        time.sleep(1.1)
        assert client.get("/healthz").status_code == 200
        assert probes.taken_at > first  # probed again
        # The broker's client is kept, not opened per call.
        assert len(app.state.relay._redis) == 1


def _settings(secret: str = SESSION):  # type: ignore[no-untyped-def]
    return relay_settings(session_secret=secret)


def test_a_verified_token_is_served_from_the_cache_for_the_same_settings_only():
    settings = _settings()
    token = issue_session_token(settings, phone=PHONE, subject="cust-a")
    claims = verify_cached(token, settings)
    assert claims["phone"] == PHONE.lstrip("+") and claims["role"] == "authenticated"
    claims["role"] = "service_role"  # a caller changing its copy changes nothing
    assert verify_cached(token, settings)["role"] == "authenticated"
    # A relay with another secret checks the token itself, and refuses it.
    with pytest.raises(InvalidToken):
        verify_cached(token, _settings("another-secret-0123456789abcdef0123456789"))


def test_refused_tokens_are_never_kept():
    settings = _settings()
    forged = jwt.encode({"sub": "x", "role": "service_role", "aud": "authenticated",
                         "iss": "regnotify", "exp": int(time.time()) + 600},
                        "not-the-secret-0123456789abcdef0123456789", algorithm="HS256")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            verify_cached(forged, settings)


def test_cache_entries_end_at_exp_or_max_age_and_the_oldest_go_first():
    cache = ClaimsCache(max_entries=2, max_age_s=0.3)
    now = time.time()
    cache.put(("a", b""), {"exp": now + 60, "sub": "a"})
    cache.put(("b", b""), {"exp": now + 0.1, "sub": "b"})
    assert cache.get(("a", b""))["sub"] == "a" and cache.get(("b", b""))["sub"] == "b"
    time.sleep(0.15)
    assert cache.get(("b", b"")) is None  # its exp passed
    time.sleep(0.2)
    assert cache.get(("a", b"")) is None  # verified too long ago
    for name in ("c", "d", "e"):
        cache.put((name, b""), {"exp": time.time() + 60})
    assert len(cache) == 2 and cache.get(("c", b"")) is None
    cache.put(("f", b""), {"sub": "no exp"})  # nothing bounds it: not kept
    assert cache.get(("f", b"")) is None
