"""The staff sign-in says nothing about who is staff, and its forms and cookies hold up:
CSRF bound to the staff session or to a nonce the server made, `__Host-` cookies,
`Origin: null` refused, checks counted per address for everyone, a member's slow or
refused send answered as anyone's, codes that work on any relay, the member's address
passed on to Supabase, and a cookie that lasts as long as its token."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import pytest

from tasks.staff import signin_routes
from tasks.staff.signin import issue_staff_token
from tests.portal_helpers import SESSION_SECRET, csrf, supabase_settings
from tests.relay_helpers import relay_settings

pytest_plugins = ["tests.portal_helpers", "tests.staff_helpers"]

STAFF, EVE = "sam@dealer.example", "eve@elsewhere.example"
CODE_LINE = re.compile(r"staff sign-in code for (\S+): (\d{6})")
_CSRF_VALUE = re.compile(r'name="csrf" value="[0-9a-f]+"')


@pytest.fixture(autouse=True)
def member(conn) -> None:
    conn.execute("INSERT INTO staff_members (email, name) VALUES (%s, 'Sam Staff')", (STAFF,))


@pytest.fixture(autouse=True)
def quick_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signin_routes, "SEND_FLOOR_S", 0.3)


def post(client, path: str, fields: dict[str, str], page: str | None = None, **kw: Any) -> Any:
    page = page if page is not None else client.get("/staff").text
    return client.post(path, data={"csrf": csrf(page), **fields}, follow_redirects=False, **kw)


def eventually(find, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        found = find()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def console_code(capsys) -> str:
    line = eventually(lambda: CODE_LINE.findall(capsys.readouterr().out))
    assert line, "no code on the relay's output"
    return str(line[-1][1])


def same_page(a: str, b: str) -> bool:
    def strip(html: str) -> str:
        html = _CSRF_VALUE.sub("", html)
        for email in (STAFF, EVE, "s**@dealer.example", "e**@elsewhere.example"):
            html = html.replace(email, "E")
        return html
    return strip(a) == strip(b)


# ── CSRF and cookies ─────────────────────────────────────────────────────────


def test_a_nonce_the_client_made_is_never_adopted(portal_client):
    client = portal_client()
    client.get("/staff")
    portal = client.app.state.portal
    invented = "x" * 43
    client.cookies.set("__Host-rn_staff_csrf", invented, path="/")
    page = client.get("/staff")
    # A fresh, server-made nonce replaces it.
    fresh = page.headers.get("set-cookie", "")
    assert fresh.startswith("__Host-rn_staff_csrf=") and invented not in fresh
    assert "Path=/;" in fresh and "Secure" in fresh
    # A token made for the invented nonce is refused.
    client.cookies.set("__Host-rn_staff_csrf", invented, path="/")
    forged = client.post("/staff/code", data={
        "csrf": portal.csrf_token(session=None, nonce=invented), "email": STAFF},
        follow_redirects=False)
    assert forged.status_code == 403


def test_a_signed_in_members_forms_are_bound_to_their_session(portal_client, capsys, conn):
    client = portal_client()
    sent = post(client, "/staff/code", {"email": STAFF})
    signed = post(client, "/staff/sign-in", {"email": STAFF, "code": console_code(capsys)},
                  sent.text)
    assert signed.status_code == 303
    page = client.get("/staff/attention").text
    # The same member, another session (another token): the page's token is not its.
    settings = relay_settings(session_secret=SESSION_SECRET)
    time.sleep(1.1)  # a new iat, so another token
    client.cookies.set("__Host-rn_staff", issue_staff_token(settings, STAFF), path="/")
    out = post(client, "/staff/sign-out", {}, page)
    assert out.status_code == 403
    assert post(client, "/staff/sign-out", {}, client.get("/staff").text).status_code == 303


def test_origin_null_is_another_origin(portal_client):
    client = portal_client()
    page = client.get("/staff")
    assert page.headers["referrer-policy"] == "same-origin"
    answer = post(client, "/staff/code", {"email": STAFF}, page.text,
                  headers={"Origin": "null"})
    assert answer.status_code == 403
    assert post(client, "/staff/code", {"email": STAFF}, page.text,
                headers={"Origin": "https://testserver"}).status_code == 200


# ── Saying nothing about who is staff ────────────────────────────────────────


def test_checks_are_counted_per_address_for_everyone_and_a_resend_does_not_reset_them(
        portal_client, capsys):
    client = portal_client()
    statuses: dict[str, list[int]] = {}
    for email in (STAFF, EVE):
        seen = []
        page = post(client, "/staff/code", {"email": email}).text
        if email == STAFF:
            console_code(capsys)
        for _ in range(3):
            seen.append(post(client, "/staff/sign-in", {"email": email, "code": "000000"},
                             page).status_code)
        page = post(client, "/staff/code", {"email": email}).text
        good = console_code(capsys) if email == STAFF else "123456"
        for _ in range(2):
            seen.append(post(client, "/staff/sign-in", {"email": email, "code": "000000"},
                             page).status_code)
        # The sixth check: refused for both, the member's right code among them.
        seen.append(post(client, "/staff/sign-in", {"email": email, "code": good},
                         page).status_code)
        statuses[email] = seen
    assert statuses[STAFF] == statuses[EVE] == [401, 401, 401, 401, 401, 429]
    assert "__Host-rn_staff" not in client.cookies


def test_a_code_works_on_another_relay(portal_client, capsys):
    one, two = portal_client(), portal_client()
    sent = post(one, "/staff/code", {"email": STAFF})
    assert sent.status_code == 200
    code = console_code(capsys)
    page = two.get("/staff").text
    signed = post(two, "/staff/sign-in", {"email": STAFF, "code": code}, page)
    assert signed.status_code == 303, signed.text
    # Used once: not again, on either.
    again = post(one, "/staff/sign-in", {"email": STAFF, "code": code})
    assert again.status_code == 401


def test_sends_are_counted_per_client_address_across_addresses(portal_client):
    client = portal_client()
    page = client.get("/staff").text
    answers = [post(client, "/staff/code", {"email": f"n{i}@elsewhere.example"}, page
                    ).status_code for i in range(11)]
    assert answers == [200] * 10 + [429]
    # A made-up X-Forwarded-For from an untrusted peer buys no fresh address.
    assert post(client, "/staff/code", {"email": "n99@elsewhere.example"}, page,
                headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 429


def test_supabase_refusing_a_members_send_answers_as_for_anyone(
        portal_client, supabase_auth, caplog):
    client = portal_client(**supabase_settings(supabase_auth))
    supabase_auth.add_email_user(STAFF, admin=True)
    supabase_auth.script("+email:" + STAFF, ["429"])
    with caplog.at_level(logging.WARNING, logger="tasks.staff"):
        member = post(client, "/staff/code", {"email": STAFF})
        other = post(client, "/staff/code", {"email": EVE})
        assert member.status_code == other.status_code == 200
        assert same_page(member.text, other.text)
        assert eventually(lambda: "was not sent (too_many)" in caplog.text), caplog.text
    assert STAFF not in caplog.text


def test_a_slow_send_does_not_hold_the_members_answer(portal_client, supabase_auth):
    client = portal_client(**supabase_settings(supabase_auth))
    supabase_auth.add_email_user(STAFF, admin=True)
    supabase_auth.script("+email:" + STAFF, ["latency:4"])
    answer = post(client, "/staff/code", {"email": STAFF})
    assert answer.status_code == 200
    # The page answered while Supabase was still sending; the code comes after.
    assert supabase_auth.sends() == []
    assert eventually(lambda: supabase_auth.sends())


def test_supabase_hears_the_members_address_and_the_cookie_lasts_as_its_token(
        portal_client, supabase_auth):
    client = portal_client(**supabase_settings(supabase_auth))
    supabase_auth.add_email_user(STAFF, admin=True)
    sent = post(client, "/staff/code", {"email": STAFF})
    code = eventually(lambda: supabase_auth.last_email_code(STAFF))
    signed = post(client, "/staff/sign-in", {"email": STAFF, "code": code}, sent.text)
    assert signed.status_code == 303
    # Sb-Forwarded-For: the client's address (the test client's), not the relay's.
    assert supabase_auth.client_ips[-2:] == ["testclient", "testclient"]
    max_age = int(re.search(r"Max-Age=(\d+)", signed.headers["set-cookie"]).group(1))
    assert 3500 <= max_age <= 3600  # Supabase's access token lasts an hour


def test_regnotifys_own_session_cookie_lasts_its_ten_hours(portal_client, capsys):
    client = portal_client()
    sent = post(client, "/staff/code", {"email": STAFF})
    signed = post(client, "/staff/sign-in", {"email": STAFF, "code": console_code(capsys)},
                  sent.text)
    max_age = int(re.search(r"Max-Age=(\d+)", signed.headers["set-cookie"]).group(1))
    assert 35_900 <= max_age <= 36_000
