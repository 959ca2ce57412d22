"""The customer page's sign-in under attack: planted CSRF cookies."""

from __future__ import annotations

import pytest

from tasks.portal import views
from tests.pg import new_registration
from tests.portal_helpers import CODE_LINE, csrf, post

pytest_plugins = ["tests.portal_helpers"]

ANA = "+15552220001"
#: Every name a planted CSRF cookie could take: today's, and the `__Host-` one.
CSRF_NAMES = ("rn_csrf", "__Host-rn_csrf")


@pytest.fixture(autouse=True)
def quick_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "SEND_FLOOR_S", 0.0)


def _plant(client, value: str) -> None:
    # As a sibling subdomain or a plain-http page would: for the whole domain.
    for name in CSRF_NAMES:
        client.cookies.set(name, value, domain="testserver.local", path="/")


def _pref(conn, reg: str) -> str:
    return conn.execute("SELECT notification_pref FROM registrations WHERE id = %s",
                        (reg,)).fetchone()["notification_pref"]


# ── 3. CSRF bound to the session, never to a nonce the client chose ─────────


def test_a_planted_csrf_cookie_does_not_validate(portal_client, conn, capsys):
    reg = new_registration(conn, customer_phone=ANA)
    planted = "attacker-chosen-nonce-" + "n" * 24
    # The attacker learns the form token the server makes for his nonce...
    attacker = portal_client()
    _plant(attacker, planted)
    forged = csrf(attacker.get("/portal").text)
    # ...and plants the nonce in the victim's browser, who then signs in.
    victim = portal_client()
    assert post(victim, "/portal/code", {"phone": ANA}).status_code == 200
    code = CODE_LINE.findall(capsys.readouterr().out)[-1][1]
    assert post(victim, "/portal/sign-in", {"phone": ANA, "code": code}).status_code == 303
    _plant(victim, planted)
    answer = post(victim, "/portal/preference",
                  {"registration_id": reg, "pref": "none", "csrf": forged}, with_csrf=False)
    assert answer.status_code == 403
    assert _pref(conn, reg) == "both"
    # Before sign-in too: the planted nonce is not adopted, so its token is no token.
    stranger = portal_client()
    _plant(stranger, planted)
    refused = post(stranger, "/portal/code", {"phone": ANA, "csrf": forged}, with_csrf=False)
    assert refused.status_code == 403
    assert not CODE_LINE.search(capsys.readouterr().out)
    # The victim's own form still works.
    assert post(victim, "/portal/preference", {"registration_id": reg, "pref": "email"}
                ).status_code == 303
    assert _pref(conn, reg) == "email"


def test_cookies_are_host_only_over_https(portal_client, capsys):
    client = portal_client()
    first = client.get("/portal")
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("__Host-rn_csrf=") and "Path=/;" in cookie + ";"
    assert "Secure" in cookie and "Domain" not in cookie
    post(client, "/portal/code", {"phone": ANA})
    code = CODE_LINE.findall(capsys.readouterr().out)[-1][1]
    signed = post(client, "/portal/sign-in", {"phone": ANA, "code": code})
    assert signed.headers["set-cookie"].startswith("__Host-rn_session=")
