"""Tokens that hold: no service_role in regnotify's own, no weak secrets, no JWKS pile-up."""

from __future__ import annotations

import threading
import time

import jwt
import pytest

from tasks.exceptions import RelayConfigError
from tasks.relay import create_app
from tests.jwks_server import JwksServer, SigningKey, supabase_claims
from tests.pg import new_registration
from tests.relay_helpers import relay_settings

pytest_plugins = ["tests.relay_helpers"]

SESSION = "security-tests-session-secret-0123456789abcdef"
LEGACY = "security-tests-legacy-supabase-secret-0123456789"


def _own(role: str, **extra: object) -> str:
    now = int(time.time())
    claims = {"sub": "attacker", "role": role, "aud": "authenticated", "phone": "",
              "iat": now, "exp": now + 600, "iss": "regnotify", **extra}
    return jwt.encode(claims, SESSION, algorithm="HS256")


# ── 1. regnotify's own tokens are `authenticated`, never service_role ────────


def test_service_role_token_signed_with_session_secret_is_refused(relay_client, conn):
    victim = new_registration(conn, customer_phone="+15557770001", customer_name="Victim",
                              customer_email="victim@example.com", vin="1HGCM82633A004352")
    client = relay_client(session_secret=SESSION, supabase_jwt_secret=LEGACY)
    for token in (_own("service_role"),
                  _own("service_role", app_metadata={"role": "admin"})):
        answer = client.get(f"/api/registrations/{victim}/timeline",
                            headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code in (401, 403), answer.text
        assert "victim@example.com" not in answer.text and "5557770001" not in answer.text
    # The customer's own token still works: the refusal is the role, not the issuer.
    mine = _own("authenticated", phone="15557770001")
    answer = client.get(f"/api/registrations/{victim}/timeline",
                        headers={"Authorization": f"Bearer {mine}"})
    assert answer.status_code == 200, answer.text


# ── 2. placeholder and short signing secrets stop the relay at start ─────────


@pytest.mark.parametrize(("name", "value", "said"), [
    ("session_secret", "change-me-session-secret", "placeholder"),
    ("supabase_jwt_secret", "change-me-supabase-jwt-secret", "placeholder"),
    ("session_secret", "too-short-0123456789", "bytes"),
    ("supabase_jwt_secret", "x" * 31, "bytes"),
])
def test_relay_refuses_to_start_with_a_weak_signing_secret(name, value, said):
    with pytest.raises(RelayConfigError) as caught:
        create_app(relay_settings(**{name: value}))
    line = str(caught.value)
    assert "\n" not in line and name.upper() in line and said in line
    assert value not in line  # the secret itself is never said


def test_a_proxy_setting_that_is_no_address_stops_the_relay_in_one_line():
    with pytest.raises(RelayConfigError) as caught:
        create_app(relay_settings(forwarded_allow_ips="10.0.0.0/8, proxy.internal"))
    assert "\n" not in str(caught.value) and "'proxy.internal'" in str(caught.value)


def test_regnotify_relay_command_says_it_in_one_line(monkeypatch, capsys):
    from tasks.settings import get_settings
    from tests.cli_runner import cli

    monkeypatch.setenv("REGNOTIFY_IGNORE_ENV_FILES", "1")
    monkeypatch.setenv("RELAY_TOKEN", "relay-token-for-the-placeholder-test-0123")
    monkeypatch.setenv("SESSION_SECRET", "change-me-session-secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    get_settings.cache_clear()
    try:
        code, _out, err = cli(capsys, "relay", "--no-listen", "--port", "9")
    finally:
        get_settings.cache_clear()
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "SESSION_SECRET" in lines[0], err


# ── 4. a JWKS outage: invented kids are refused at once ──────────────────────


def test_invented_kids_during_a_jwks_outage_are_refused_quickly(relay_client):
    server = JwksServer(keys=[SigningKey.es256()]).start()
    try:
        # A short cooldown so the outage starts after it has run out, as it
        # would a minute into a real one.
        client = relay_client(supabase_url=server.url, supabase_jwks_cooldown_s=0.5,
                              session_secret=SESSION)
        good = server.token(server.keys[0])
        assert client.get("/api/me/registrations",
                          headers={"Authorization": f"Bearer {good}"}).status_code == 200
        time.sleep(0.6)
        server.delay_s = 30.0  # the endpoint hangs
        before = server.fetches
        stranger = SigningKey.es256()
        tokens = [jwt.encode(supabase_claims(server.issuer), stranger.private, algorithm="ES256",
                             headers={"kid": f"invented-{i}"}) for i in range(20)]
        statuses: list[int] = []

        def attack() -> None:
            for token in tokens:
                statuses.append(client.get("/api/me/registrations", headers={
                    "Authorization": f"Bearer {token}"}).status_code)

        started = time.monotonic()
        worker = threading.Thread(target=attack, daemon=True)
        worker.start()
        worker.join(1.0)
        took = time.monotonic() - started
        assert not worker.is_alive(), f"{len(statuses)} of 20 answered within 1 s"
        assert statuses == [401] * 20 and took < 1.0
        assert server.fetches - before <= 1  # one fetch in flight, not one per token
        # A customer whose key is known is served all along.
        assert client.get("/api/me/registrations",
                          headers={"Authorization": f"Bearer {good}"}).status_code == 200
    finally:
        server.delay_s = 0.0
        server.stop()
