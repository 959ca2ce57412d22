"""The relay's /api routes in process, with real tokens, run as the caller on the real database.

Customers A and B sign in with regnotify's own tokens; staff carry a Supabase
ES256 token from the local JWKS endpoint; anon and service tokens are signed
with the legacy Supabase secret. The database's grants and policies decide.
"""

from __future__ import annotations

import logging
import time

import jwt
import pytest

from tasks.auth.api_tokens import issue_session_token
from tests.jwks_server import JwksServer, SigningKey, supabase_claims
from tests.pg import new_registration
from tests.relay_helpers import relay_settings

pytest_plugins = ["tests.relay_helpers"]

SESSION = "session-secret-for-the-api-tests-0123456789"
LEGACY = "legacy-supabase-jwt-secret-0123456789abcdef"
ANA, BEN = "+15554440001", "+15554440002"
NOWHERE = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def jwks():
    server = JwksServer(keys=[SigningKey.es256()]).start()
    yield server
    server.stop()


@pytest.fixture()
def api_settings(jwks) -> dict:
    return {"session_secret": SESSION, "supabase_jwt_secret": LEGACY,
            "supabase_url": jwks.url}


@pytest.fixture()
def client(relay_client, api_settings):
    return relay_client(**api_settings)


@pytest.fixture()
def tokens(jwks, api_settings) -> dict[str, str]:
    settings = relay_settings(**api_settings)

    def legacy(**claims) -> str:
        return jwt.encode(supabase_claims(jwks.issuer, **claims), LEGACY, algorithm="HS256")

    return {
        "a": issue_session_token(settings, phone=ANA, subject="cust-a"),
        "b": issue_session_token(settings, phone=BEN, subject="cust-b"),
        "admin": jwks.token(jwks.keys[0], sub="staff-1", phone="",
                            app_metadata={"provider": "email", "role": "admin"}),
        "service": legacy(role="service_role", sub="backend", phone=""),
        "anon": legacy(role="anon", sub="", phone=""),
    }


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def regs(conn) -> dict[str, str]:
    ids = {}
    for key, phone in (("a", ANA), ("b", BEN)):
        reg = new_registration(conn, customer_phone=phone, customer_name=key.upper(),
                               customer_email=f"{key}@example.com", vehicle_make="Ford")
        conn.execute("UPDATE registrations SET current_stage = 'submitted_to_dmv' "
                     "WHERE id = %s", (reg,))
        conn.execute("INSERT INTO registration_notifications (registration_id, channel, "
                     "recipient, status) VALUES (%s, 'sms', %s, 'sent')", (reg, phone))
        ids[key] = reg
    return ids


# ── Tokens ───────────────────────────────────────────────────────────────────


def test_no_token_is_401(client, regs):
    response = client.get("/api/me/registrations")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("case", ["expired", "wrong-aud", "garbage", "unknown-kid"])
def test_a_refused_token_is_401_without_saying_why(client, regs, jwks, tokens, caplog, case):
    token = {
        "expired": jwks.token(jwks.keys[0], exp=int(time.time()) - 300),
        "wrong-aud": jwks.token(jwks.keys[0], aud="anon"),
        "garbage": "not-a-jwt",
        "unknown-kid": jwks.token(SigningKey.es256()),
    }[case]
    with caplog.at_level(logging.INFO, logger="tasks.relay"):
        response = client.get(f"/api/registrations/{regs['a']}/timeline", headers=auth(token))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.json() == {"error": "invalid bearer token"}
    lines = [r for r in caplog.records if r.name.startswith("tasks.relay")]
    assert len(lines) == 1 and "401" in lines[0].getMessage()
    assert token not in lines[0].getMessage()


# ── The matrix: A, B, admin, anon, service ───────────────────────────────────


def test_me_lists_only_the_callers_registrations(client, regs, tokens):
    got = client.get("/api/me/registrations", headers=auth(tokens["a"]))
    assert got.status_code == 200
    [mine] = got.json()["registrations"]
    assert mine["id"] == regs["a"] and mine["notification_pref"] == "both"
    assert (mine["stage"], mine["stage_label"], mine["stage_position"]) == (
        "submitted_to_dmv", "Submitted to the DMV", 30)
    assert mine["vehicle"]["make"] == "Ford"
    assert [r["id"] for r in client.get("/api/me/registrations", headers=auth(tokens["b"]))
            .json()["registrations"]] == [regs["b"]]
    # Staff and the backend have no phone: no registrations of their own.
    for who in ("admin", "service"):
        assert client.get("/api/me/registrations", headers=auth(tokens[who])).json() == {
            "registrations": []}
    assert client.get("/api/me/registrations", headers=auth(tokens["anon"])).status_code == 403


def test_timeline_as_each_caller(client, regs, tokens):
    def get(who: str, key: str):
        return client.get(f"/api/registrations/{regs[key]}/timeline", headers=auth(tokens[who]))

    own = get("a", "a")
    assert own.status_code == 200 and own.json()["registration_id"] == regs["a"]
    assert {e["kind"] for e in own.json()["events"]} >= {"stage_change", "message"}
    assert BEN not in own.text and "b@example.com" not in own.text
    # B's registration, timeline and contact do not exist for A.
    assert get("a", "b").status_code == 404 and BEN not in get("a", "b").text
    assert get("b", "a").status_code == 404
    for who in ("admin", "service"):
        assert get(who, "a").status_code == 200 and get(who, "b").status_code == 200
    assert get("anon", "a").status_code == 403


def test_notify_as_each_caller(client, conn, regs, tokens, live_broker):
    conn.execute("UPDATE notification_queue SET sent = true")
    path = f"/api/registrations/{regs['a']}/notify"
    for who in ("a", "b", "anon"):
        assert client.post(path, headers=auth(tokens[who])).status_code == 403, who
    assert conn.execute("SELECT count(*) AS n FROM notification_queue WHERE NOT sent"
                        ).fetchone()["n"] == 0
    for who in ("admin", "service"):
        response = client.post(path, headers=auth(tokens[who]),
                               json={"bypass_quiet_hours": True})
        assert response.status_code == 200, response.text
        assert response.json()["queued"] is True
        assert response.json()["channels"] == ["sms", "email"]


def test_notify_unknown_malformed_and_bad_bodies(client, regs, tokens):
    admin = auth(tokens["admin"])
    assert client.post(f"/api/registrations/{NOWHERE}/notify", headers=admin
                       ).status_code == 404
    for bad_id in ("not-a-uuid", "1", "%27%3B--", "0" * 40):
        assert client.post(f"/api/registrations/{bad_id}/notify", headers=admin
                           ).status_code == 404, bad_id
        assert client.get(f"/api/registrations/{bad_id}/timeline", headers=admin
                          ).status_code == 404, bad_id
    path = f"/api/registrations/{regs['a']}/notify"
    for body in ('{"bypass_quiet_hours": "yes"}', "[]", "{", '{"other": 1}'):
        assert client.post(path, headers={**admin, "Content-Type": "application/json"},
                           content=body).status_code == 422, body


def test_patch_own_preference_only(client, conn, regs, tokens):
    path = f"/api/me/registrations/{regs['a']}"
    response = client.patch(path, headers=auth(tokens["a"]), json={"notification_pref": "email"})
    assert response.status_code == 200
    assert response.json() == {"id": regs["a"], "notification_pref": "email", "language": None}
    row = conn.execute("SELECT notification_pref FROM registrations WHERE id = %s",
                       (regs["a"],)).fetchone()
    assert row["notification_pref"] == "email"
    change = conn.execute("SELECT changed_by_kind, changed_by FROM notification_pref_changes "
                          "WHERE registration_id = %s", (regs["a"],)).fetchone()
    assert change == {"changed_by_kind": "customer", "changed_by": "cust-a"}
    # B's row is not A's to change; nor is it staff's through /me.
    for who in ("a", "admin"):
        assert client.patch(f"/api/me/registrations/{regs['b']}", headers=auth(tokens[who]),
                            json={"notification_pref": "none"}).status_code == 404
    assert client.patch(f"/api/me/registrations/{regs['b']}", headers=auth(tokens["anon"]),
                        json={"notification_pref": "none"}).status_code == 403
    assert conn.execute("SELECT notification_pref FROM registrations WHERE id = %s",
                        (regs["b"],)).fetchone()["notification_pref"] == "both"


def test_patch_own_language_through_the_column_grant(client, conn, regs, tokens):
    path = f"/api/me/registrations/{regs['a']}"
    response = client.patch(path, headers=auth(tokens["a"]), json={"language": "es"})
    assert response.status_code == 200, response.text
    assert response.json()["language"] == "es"
    mine = client.get("/api/me/registrations", headers=auth(tokens["a"])).json()
    assert [r["language"] for r in mine["registrations"]] == ["es"]
    # Both at once, and back to the dealership's default with null.
    response = client.patch(path, headers=auth(tokens["a"]),
                            json={"language": None, "notification_pref": "sms"})
    assert response.json() == {"id": regs["a"], "notification_pref": "sms", "language": None}
    assert client.patch(f"/api/me/registrations/{regs['b']}", headers=auth(tokens["a"]),
                        json={"language": "es"}).status_code == 404
    assert conn.execute("SELECT language FROM registrations WHERE id = %s",
                        (regs["b"],)).fetchone()["language"] is None


@pytest.mark.parametrize("body", [{"notification_pref": "fax"}, {"notification_pref": None},
                                  {"language": "fr"}, {"language": "ES"},
                                  {"notification_pref": 1}, {"current_stage": "sale_complete"},
                                  {}, {"notification_pref": "sms", "customer_phone": "+1"}])
def test_patch_refuses_other_values_with_422(client, regs, tokens, body):
    response = client.patch(f"/api/me/registrations/{regs['a']}", headers=auth(tokens["a"]),
                            json=body)
    assert response.status_code == 422


def test_database_down_is_503(relay_client, api_settings, tokens, regs):
    down = relay_client(**api_settings, database_url="postgresql://nobody@127.0.0.1:1/none")
    for method, path in (("GET", "/api/me/registrations"),
                         ("GET", f"/api/registrations/{regs['a']}/timeline"),
                         ("POST", f"/api/registrations/{regs['a']}/notify")):
        response = down.request(method, path, headers=auth(tokens["admin"]))
        assert response.status_code == 503, path
        assert response.json() == {"error": "database unavailable"}


# ── CORS ─────────────────────────────────────────────────────────────────────


def _preflight(client, origin: str):
    return client.options("/api/me/registrations", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})


def test_no_cross_origin_caller_by_default(client, regs, tokens):
    got = client.get("/api/me/registrations", headers={**auth(tokens["a"]),
                                                       "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in got.headers
    assert "access-control-allow-origin" not in _preflight(client, "https://x.example").headers


def test_allowed_origins_get_cors(relay_client, api_settings, regs, tokens):
    client = relay_client(**api_settings,
                          api_allowed_origins="https://admin.example, https://portal.example")
    ok = _preflight(client, "https://admin.example")
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://admin.example"
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in _preflight(client, "https://evil.example").headers
    got = client.get("/api/me/registrations", headers={**auth(tokens["a"]),
                                                       "Origin": "https://portal.example"})
    assert got.headers["access-control-allow-origin"] == "https://portal.example"


# ── Documented ───────────────────────────────────────────────────────────────


def test_the_api_is_in_openapi_and_docs(client):
    doc = client.get("/openapi.json").json()
    for path in ("/api/registrations/{id}/notify", "/api/registrations/{id}/timeline",
                 "/api/me/registrations", "/api/me/registrations/{id}"):
        for operation in doc["paths"][path].values():
            assert operation["security"] == [{"callerJwt": []}]
            assert "401" in operation["responses"]
    assert "/api/me/registrations</code>" in client.get("/docs").text


# ── An admin's notify, sent by a real worker ─────────────────────────────────


@pytest.mark.e2e
def test_admin_notify_is_sent_by_a_real_worker_within_seconds(
    tmp_path, broker_app, live_broker, client, conn, regs, tokens, twilio_wire, resend_wire,
    clean_db, redis_server,
):
    from tests.conftest import provider_env
    from tests.worker_process import WorkerProcess, regnotify_worker_argv

    conn.execute("UPDATE notification_queue SET sent = true")
    worker = WorkerProcess(regnotify_worker_argv(2),
                           provider_env(clean_db, redis_server.url, twilio_wire, resend_wire),
                           tmp_path / "worker.log")
    worker.start(broker_app)
    try:
        started = time.monotonic()
        response = client.post(f"/api/registrations/{regs['a']}/notify",
                               headers=auth(tokens["admin"]))
        assert response.status_code == 200 and response.json()["queued"] is True
        while not (twilio_wire.accepted_count() and resend_wire.accepted_count()):
            assert time.monotonic() - started < 15, worker.log()
            time.sleep(0.1)
        took = time.monotonic() - started
    finally:
        worker.stop()
    [text] = twilio_wire.sends()
    assert text.to == ANA and "submitted to the DMV" in text.body
    print(f"admin notify -> text accepted by the Twilio wire in {took:.2f}s")


def test_an_oversized_body_is_413_as_elsewhere(relay_client, api_settings, regs, tokens):
    client = relay_client(**api_settings, relay_max_body_bytes=1024)
    response = client.patch(f"/api/me/registrations/{regs['a']}", headers=auth(tokens["a"]),
                            content=b'{"notification_pref": "' + b"x" * 4096 + b'"}')
    assert response.status_code == 413


def test_a_login_that_cannot_set_role_is_503_naming_the_grant(
    relay_client, api_settings, tokens, pg_cluster, plain_database_url, caplog
):
    from tests.conftest import PLAIN_DATABASE, PLAIN_OWNER, database_url_for

    # The plain owner migrated its database but is no member of the API roles.
    client = relay_client(**api_settings, database_url=database_url_for(
        pg_cluster, PLAIN_DATABASE, PLAIN_OWNER))
    with caplog.at_level(logging.WARNING, logger="tasks.relay"):
        response = client.get("/api/me/registrations", headers=auth(tokens["a"]))
    assert response.status_code == 503
    assert "GRANT authenticated, service_role TO" in caplog.text
