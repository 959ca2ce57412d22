"""The customer page through its HTTP door: sign-in by code with each sender, what a
customer sees and may change, and the abuse it refuses (each changing nothing)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from tasks.auth.api_tokens import issue_session_token
from tasks.portal import limits, views
from tests.pg import new_registration
from tests.portal_helpers import (
    CODE_LINE,
    SESSION_COOKIE,
    SESSION_SECRET,
    csrf,
    post,
    supabase_settings,
    verify_settings,
)
from tests.relay_helpers import relay_settings

pytest_plugins = ["tests.portal_helpers"]

ANA, BEN = "+15551110001", "+15551110002"


@pytest.fixture(autouse=True)
def quick_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    # The floor that hides a number's answer time; the timing test sets its own.
    monkeypatch.setattr(views, "SEND_FLOOR_S", 0.0)


@pytest.fixture()
def regs(conn) -> dict[str, str]:
    return {"ana": new_registration(conn, customer_phone=ANA, vehicle_make="Toyota",
                                    vehicle_model="Corolla", vehicle_year=2022),
            "ben": new_registration(conn, customer_phone=BEN, vehicle_make="Ford",
                                    vehicle_model="Ranger", vehicle_year=2021,
                                    customer_email="ben@example.com")}


def console_code(capsys: pytest.CaptureFixture[str]) -> str:
    found = CODE_LINE.findall(capsys.readouterr().out)
    assert found, "no sign-in code line on the relay's output"
    return found[-1][1]


def send(client, phone: str) -> Any:
    return post(client, "/portal/code", {"phone": phone})


def check(client, phone: str, code: str) -> Any:
    return post(client, "/portal/sign-in", {"phone": phone, "code": code})


def console_sign_in(client, capsys, phone: str = ANA) -> Any:
    answer = send(client, phone)
    assert answer.status_code == 200, answer.text
    signed = check(client, phone, console_code(capsys))
    assert signed.status_code == 303, signed.text
    return signed


def pref_of(conn, reg: str) -> str:
    return conn.execute("SELECT notification_pref FROM registrations WHERE id = %s",
                        (reg,)).fetchone()["notification_pref"]


# ── Sign-in and what a customer sees ─────────────────────────────────────────


def test_console_code_signs_in_and_shows_only_the_customers_registration(
        portal_client, regs, capsys, conn):
    client = portal_client()
    page = client.get("/portal")
    assert page.status_code == 200 and 'name="phone"' in page.text
    sent = send(client, "(555) 111-0001")  # typed as a person types it, +1 assumed
    assert "+*******0001" in sent.text and 'name="code"' in sent.text
    line = capsys.readouterr().out
    assert CODE_LINE.search(line) and ANA not in line  # the number is masked
    signed = check(client, ANA, CODE_LINE.search(line).group(2))
    assert signed.status_code == 303 and signed.headers["location"] == "/portal"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert "Secure" in cookie and "Max-Age=3600" in cookie
    home = client.get("/portal")
    assert "2022 Toyota Corolla" in home.text and "Ford" not in home.text
    assert "Step 1 of 6: Sale complete" in home.text
    assert 'aria-current="step"' in home.text
    # The claims have Supabase's shape, phone without '+', an hour to live.
    token = client.cookies.get(SESSION_COOKIE)
    claims = jwt.decode(token, SESSION_SECRET, algorithms=["HS256"], audience="authenticated")
    assert claims["phone"] == ANA[1:] and claims["role"] == "authenticated"
    assert 3500 <= claims["exp"] - time.time() <= 3600


def test_preference_change_goes_through_rls_and_is_audited_as_the_customer(
        portal_client, regs, capsys, conn):
    client = portal_client()
    console_sign_in(client, capsys)
    home = client.get("/portal").text
    saved = post(client, "/portal/preference", {"registration_id": regs["ana"], "pref": "email"},
                 home)
    assert saved.status_code == 303 and saved.headers["location"] == "/portal?saved=1"
    assert pref_of(conn, regs["ana"]) == "email"
    after = client.get(saved.headers["location"]).text
    assert "Saved." in after and 'value="email" checked' in after
    audit = conn.execute("SELECT changed_by_kind FROM notification_pref_changes "
                         "WHERE registration_id = %s", (regs["ana"],)).fetchall()
    assert [a["changed_by_kind"] for a in audit] == ["customer"]


def test_sign_out_ends_the_session(portal_client, regs, capsys):
    client = portal_client()
    console_sign_in(client, capsys)
    home = client.get("/portal").text
    out = post(client, "/portal/sign-out", {}, home)
    assert out.status_code == 303 and 'rn_session=""' in out.headers["set-cookie"]
    assert 'name="phone"' in client.get("/portal").text


def test_a_number_without_a_registration_sees_an_empty_page(portal_client, regs, capsys):
    client = portal_client()
    console_sign_in(client, capsys, "+15559990000")
    home = client.get("/portal")
    assert home.status_code == 200
    assert "We have no registration for this number" in home.text
    assert "Toyota" not in home.text and "Ford" not in home.text


def test_spanish_from_accept_language_and_the_switch(portal_client, regs, capsys):
    client = portal_client()
    page = client.get("/portal", headers={"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"})
    assert '<html lang="es">' in page.text and "Número de celular" in page.text
    console_sign_in(client, capsys)
    home = client.get("/portal?lang=es").text
    assert "Paso 1 de 6: Venta completada" in home and "Cerrar sesión" in home
    # The switch is remembered over the browser's language.
    again = client.get("/portal", headers={"Accept-Language": "en"}).text
    assert '<html lang="es">' in again
    assert '<html lang="en">' in client.get("/portal?lang=en").text


def test_headers_strict_csp_no_framing(portal_client):
    page = portal_client().get("/portal")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "script-src" not in csp  # no script at all
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


def test_cookies_are_not_secure_on_a_plain_http_relay(portal_client):
    client = portal_client(relay_public_url="http://127.0.0.1:8000")
    assert "Secure" not in client.get("/portal").headers["set-cookie"]


def test_no_console_codes_off_loopback(portal_client, capsys):
    client = portal_client(loopback=False)
    page = client.get("/portal")
    assert "Sign-in is not available yet" in page.text and 'name="phone"' not in page.text
    assert post(client, "/portal/code", {"phone": ANA}, with_csrf=False).status_code == 403
    assert not CODE_LINE.search(capsys.readouterr().out)


def test_page_is_small(portal_client, regs, capsys):
    client = portal_client()
    console_sign_in(client, capsys)
    html = client.get("/portal").content
    css = client.get("/portal/portal.css").content
    print(f"portal page: {len(html)} bytes HTML + {len(css)} bytes CSS")
    assert len(html) + len(css) < 20_000


# ── Abuse: each refused, each changing nothing ───────────────────────────────


def test_wrong_code_six_times_then_even_the_right_one_is_refused(portal_client, regs, capsys):
    client = portal_client()
    send(client, ANA)
    code = console_code(capsys)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    answers = [check(client, ANA, wrong).status_code for _ in range(6)]
    assert answers == [401] * 5 + [429]
    assert check(client, ANA, code).status_code in (401, 429)
    assert SESSION_COOKIE not in client.cookies
    assert 'name="phone"' in client.get("/portal").text


def test_a_code_works_once(portal_client, regs, capsys):
    client = portal_client()
    send(client, ANA)
    code = console_code(capsys)
    assert check(client, ANA, code).status_code == 303
    other = portal_client()
    replay = check(other, ANA, code)
    assert replay.status_code == 401 and SESSION_COOKIE not in other.cookies


def test_an_expired_code_is_refused(portal_client, regs, capsys, monkeypatch):
    monkeypatch.setattr(limits, "CODE_TTL_S", 0.05)
    client = portal_client()
    send(client, ANA)
    code = console_code(capsys)
    time.sleep(0.1)
    assert check(client, ANA, code).status_code == 401
    assert SESSION_COOKIE not in client.cookies


def _with_session(client, token: str) -> None:
    client.cookies.set(SESSION_COOKIE, token, domain="testserver.local", path="/portal")


@pytest.mark.parametrize("kind", ["forged", "expired", "garbage"])
def test_forged_or_expired_cookie_is_refused(portal_client, regs, conn, kind):
    client = portal_client()
    page = client.get("/portal").text
    settings = relay_settings(session_secret="another-secret-" + "x" * 32)
    token = {
        "forged": issue_session_token(settings, phone=BEN, subject="x"),
        "expired": issue_session_token(relay_settings(session_secret=SESSION_SECRET),
                                       phone=BEN, subject="x", ttl_s=-120),
        "garbage": "not.a.token",
    }[kind]
    _with_session(client, token)
    home = client.get("/portal")
    assert "Ford" not in home.text and "Your session has ended" in home.text
    changed = post(client, "/portal/preference", {"registration_id": regs["ben"], "pref": "none"},
                   page)
    assert changed.status_code == 303 and changed.headers["location"] == "/portal"
    assert pref_of(conn, regs["ben"]) == "both"


def test_forms_without_their_csrf_token_are_refused(portal_client, regs, capsys, conn):
    client = portal_client()
    console_sign_in(client, capsys)
    no_token = post(client, "/portal/preference", {"registration_id": regs["ana"], "pref": "none"},
                    with_csrf=False)
    assert no_token.status_code == 403
    # Another browser's token (its own cookie) does not fit this one's.
    stranger = portal_client()
    theirs = csrf(stranger.get("/portal").text)
    wrong = post(client, "/portal/preference",
                 {"registration_id": regs["ana"], "pref": "none", "csrf": theirs}, with_csrf=False)
    assert wrong.status_code == 403
    assert pref_of(conn, regs["ana"]) == "both"
    assert post(client, "/portal/sign-out", {}, with_csrf=False).status_code == 403
    assert "2022 Toyota" in client.get("/portal").text  # still signed in
    assert post(client, "/portal/code", {"phone": ANA}, with_csrf=False).status_code == 403
    assert not CODE_LINE.search(capsys.readouterr().out)


def test_customer_a_cannot_touch_b_registration(portal_client, regs, capsys, conn):
    client = portal_client()
    console_sign_in(client, capsys)  # Ana
    home = client.get("/portal").text
    answer = post(client, "/portal/preference", {"registration_id": regs["ben"], "pref": "none"},
                  home)
    assert answer.status_code == 404 and "not on this account" in answer.text
    assert "Ford" not in answer.text
    assert pref_of(conn, regs["ben"]) == "both"
    for bad in ("not-a-uuid", "", "'; DROP TABLE registrations; --"):
        assert post(client, "/portal/preference", {"registration_id": bad, "pref": "none"},
                    home).status_code == 404
    assert post(client, "/portal/preference", {"registration_id": regs["ana"], "pref": "fax"},
                home).status_code == 404
    assert pref_of(conn, regs["ana"]) == "both"


def test_sends_are_limited_per_number_and_per_ip(portal_client, capsys):
    client = portal_client()
    answers = [send(client, ANA).status_code for _ in range(limits.SENDS_PER_NUMBER + 1)]
    assert answers == [200] * limits.SENDS_PER_NUMBER + [429]
    # Every try counts against the address, the refused one too.
    left = limits.SENDS_PER_IP - len(answers)
    others = [send(client, f"+1555222{i:04d}").status_code for i in range(left + 1)]
    assert others == [200] * left + [429]
    printed = CODE_LINE.findall(capsys.readouterr().out)
    assert len(printed) == limits.SENDS_PER_NUMBER + left


def test_unknown_and_known_numbers_get_the_same_answer_in_the_same_time(
        portal_client, regs, capsys, monkeypatch):
    monkeypatch.setattr(views, "SEND_FLOOR_S", 0.5)
    client = portal_client()
    timed = {}
    for phone in (ANA, "+15559990001"):
        started = time.monotonic()
        answer = send(client, phone)
        timed[phone] = (time.monotonic() - started, answer.status_code,
                        answer.text.replace(phone, "NUMBER").replace(phone[-4:], "####"))
    (t_known, s_known, body_known), (t_unknown, s_unknown, body_unknown) = timed.values()
    assert s_known == s_unknown == 200 and body_known == body_unknown
    assert 0.5 <= t_known < 0.8 and 0.5 <= t_unknown < 0.8


# ── Supabase Auth ────────────────────────────────────────────────────────────


def test_supabase_sign_in_uses_its_session_and_the_customers_ip(
        portal_client, regs, supabase_auth):
    client = portal_client(**supabase_settings(supabase_auth))
    assert send(client, ANA).status_code == 200
    assert check(client, ANA, supabase_auth.last_code(ANA)).status_code == 303
    claims = jwt.decode(client.cookies.get(SESSION_COOKIE), options={"verify_signature": False})
    assert claims["iss"] == supabase_auth.url + "/auth/v1"  # Supabase's own token
    assert "2022 Toyota Corolla" in client.get("/portal").text
    assert supabase_auth.client_ips == ["testclient", "testclient"]  # Sb-Forwarded-For


def test_supabase_errors_are_refusals(portal_client, regs, supabase_auth):
    client = portal_client(**supabase_settings(supabase_auth))
    send(client, ANA)
    code = supabase_auth.last_code(ANA)
    # A second send within Supabase's sms_max_frequency: its 429.
    again = send(client, ANA)
    assert again.status_code == 429 and "Too many tries" in again.text
    supabase_auth.age_code(ANA, 700)  # past the 10 minutes
    assert check(client, ANA, code).status_code == 401
    supabase_auth.script(ANA, ["429"])
    assert check(client, ANA, code).status_code == 429
    assert SESSION_COOKIE not in client.cookies


def test_supabase_six_wrong_codes_stop_at_five_checks(portal_client, regs, supabase_auth):
    client = portal_client(**supabase_settings(supabase_auth))
    send(client, ANA)
    code = supabase_auth.last_code(ANA)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    answers = [check(client, ANA, wrong).status_code for _ in range(6)]
    assert answers == [401] * 5 + [429]
    assert check(client, ANA, code).status_code == 429  # regnotify's count, not Supabase's
    verifies = [a for a in supabase_auth.attempts() if a.status in (200, 403)]
    assert len(verifies) == 5 + 1  # the send and five checks reached Supabase


def test_supabase_unknown_number_with_signups_off_gets_the_same_answer(
        portal_client, supabase_auth):
    supabase_auth.allow_signups = False
    try:
        supabase_auth.add_user(ANA)
        client = portal_client(**supabase_settings(supabase_auth))
        known = send(client, ANA)
        unknown = send(client, "+15559990002")
        assert known.status_code == unknown.status_code == 200
        assert (known.text.replace(ANA, "N").replace("0001", "#")
                == unknown.text.replace("+15559990002", "N").replace("0002", "#"))
    finally:
        supabase_auth.allow_signups = True


# ── Twilio Verify ────────────────────────────────────────────────────────────


def test_twilio_verify_sign_in(portal_client, regs, twilio_verify):
    client = portal_client(**verify_settings(twilio_verify))
    assert send(client, ANA).status_code == 200
    assert check(client, ANA, twilio_verify.last_code(ANA)).status_code == 303
    assert "2022 Toyota Corolla" in client.get("/portal").text
    claims = jwt.decode(client.cookies.get(SESSION_COOKIE), SESSION_SECRET, algorithms=["HS256"],
                        audience="authenticated")
    assert claims["phone"] == ANA[1:]


def test_twilio_verify_errors_are_refusals(portal_client, regs, twilio_verify):
    client = portal_client(**verify_settings(twilio_verify))
    send(client, ANA)
    code = twilio_verify.last_code(ANA)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    assert [check(client, ANA, wrong).status_code for _ in range(6)] == [401] * 5 + [429]
    assert check(client, ANA, code).status_code == 429  # Twilio's 60202 holds
    # An expired verification: Twilio's 404.
    send(client, BEN)
    ben_code = twilio_verify.last_code(BEN)
    twilio_verify.age_code(BEN, 700)
    assert check(client, BEN, ben_code).status_code == 401
    twilio_verify.script("+15559990003", ["429"])
    assert send(client, "+15559990003").status_code == 429
    assert SESSION_COOKIE not in client.cookies


def test_twilio_verify_max_sends_is_its_own(portal_client, twilio_verify):
    client = portal_client(**verify_settings(twilio_verify))
    answers = [send(client, ANA).status_code for _ in range(6)]
    assert answers == [200] * 5 + [429]  # Twilio's 60203; regnotify counts no sends per number


def test_message_history_shows_holds_and_only_the_customers_own(portal_client, regs, capsys,
                                                                  conn):
    from tests.relay_helpers import new_delivery

    conn.execute("UPDATE registrations SET time_zone = 'America/New_York' WHERE id = %s",
                 (regs["ana"],))
    # RLS shows a customer the messages to their own number or address.
    new_delivery(conn, channel="sms", provider_message_id="SMa", status="delivered",
                 registration_id=regs["ana"], new_stage="documents_collected", recipient=ANA)
    new_delivery(conn, channel="sms", provider_message_id=None, status="queued",
                 registration_id=regs["ana"], new_stage="submitted_to_dmv", recipient=ANA,
                 hold_reason="quiet_hours", held_until="2030-01-02 13:00+00",
                 hold_zone="America/New_York")
    new_delivery(conn, channel="email", provider_message_id=None, status="skipped",
                 registration_id=regs["ana"], new_stage="submitted_to_dmv",
                 skip_reason="preference")
    new_delivery(conn, channel="sms", provider_message_id="SMb", status="failed",
                 registration_id=regs["ben"], new_stage="sticker_ready", recipient=BEN)
    client = portal_client()
    console_sign_in(client, capsys)
    text = " ".join(client.get("/portal").text.split())
    assert "Delivered" in text
    assert "Held for quiet hours until Jan 2, 2030, 8:00 AM EST" in text
    assert "Not sent (your choice)" in text
    assert "Plates and sticker ready</span> <span" not in text  # Ben's message
    assert "Not delivered" not in text
    es = " ".join(client.get("/portal?lang=es").text.split())
    assert "Retenido por horario de descanso hasta 2 ene 2030, 8:00 EST" in es


def test_a_registration_that_needs_attention_says_so(portal_client, regs, capsys, conn):
    conn.execute("UPDATE registrations SET current_stage = 'needs_attention' WHERE id = %s",
                 (regs["ana"],))
    client = portal_client()
    console_sign_in(client, capsys)
    page = client.get("/portal")
    assert page.status_code == 200
    assert "Needs your attention. The dealership needs something from you" in page.text
    assert 'aria-current="step"' not in page.text and "Step " not in page.text


# ── The language of the customer's messages ──────────────────────────────────


def lang_row(conn, reg: str) -> dict[str, Any]:
    return conn.execute("SELECT language, notification_pref, updated_at FROM registrations "
                        "WHERE id = %s", (reg,)).fetchone()


def test_customer_chooses_spanish_messages_through_rls_and_the_guard(
        portal_client, regs, capsys, conn, monkeypatch):
    from tasks.portal import data

    monkeypatch.setattr(data, "_defaults_cache", {})  # the default read afresh
    conn.execute("UPDATE notification_config SET default_language = 'es'")
    client = portal_client()
    console_sign_in(client, capsys)
    home = client.get("/portal").text
    assert "Not chosen yet: we write to you in Spanish, the dealership&#39;s default." in home
    assert '<legend>Send my messages in</legend>' in home
    assert 'name="language" value="en">' in home and 'name="language" value="es">' in home
    assert '<label for="l-es-' in home and 'lang="es">Español</label>' in home
    # Saving only the preference leaves an unchosen language unchosen.
    assert post(client, "/portal/preference", {"registration_id": regs["ana"], "pref": "both"},
                home).status_code == 303
    before = lang_row(conn, regs["ana"])
    assert before["language"] is None
    saved = post(client, "/portal/preference",
                 {"registration_id": regs["ana"], "pref": "both", "language": "es"}, home)
    assert saved.status_code == 303 and saved.headers["location"] == "/portal?saved=1"
    after = lang_row(conn, regs["ana"])
    assert after["language"] == "es" and after["notification_pref"] == "both"
    assert after["updated_at"] > before["updated_at"]  # the guard trigger let it through
    audit = conn.execute("SELECT count(*) AS n FROM notification_pref_changes "
                         "WHERE registration_id = %s", (regs["ana"],)).fetchone()["n"]
    assert audit == 0  # the preference did not change, so nothing to audit
    page = client.get("/portal?saved=1").text
    assert "Saved." in page and 'value="es" checked' in page and "Not chosen yet" not in page
    es = client.get("/portal?lang=es").text
    assert "Enviarme los mensajes en" in es and 'lang="en">English</label>' in es
    # The next save of the preference alone keeps the chosen language.
    post(client, "/portal/preference", {"registration_id": regs["ana"], "pref": "sms"}, home)
    assert (lang_row(conn, regs["ana"])["language"], pref_of(conn, regs["ana"])) == ("es", "sms")
    assert lang_row(conn, regs["ben"])["language"] is None


def test_another_customers_language_is_refused_and_unchanged(portal_client, regs, capsys, conn):
    client = portal_client()
    console_sign_in(client, capsys)  # Ana
    home = client.get("/portal").text
    answer = post(client, "/portal/preference",
                  {"registration_id": regs["ben"], "pref": "both", "language": "es"}, home)
    assert answer.status_code == 404 and "not on this account" in answer.text
    assert lang_row(conn, regs["ben"])["language"] is None


@pytest.mark.parametrize("bad", ["fr", "ES", "es'; --", "spanish"])
def test_a_language_not_offered_is_refused_without_change(portal_client, regs, capsys, conn,
                                                           bad):
    conn.execute("UPDATE registrations SET language = 'en' WHERE id = %s", (regs["ana"],))
    client = portal_client()
    console_sign_in(client, capsys)
    answer = post(client, "/portal/preference",
                  {"registration_id": regs["ana"], "pref": "email", "language": bad})
    assert answer.status_code == 404
    row = lang_row(conn, regs["ana"])
    assert (row["language"], row["notification_pref"]) == ("en", "both")


def test_a_language_without_the_csrf_token_is_refused(portal_client, regs, capsys, conn):
    client = portal_client()
    console_sign_in(client, capsys)
    answer = post(client, "/portal/preference",
                  {"registration_id": regs["ana"], "pref": "both", "language": "es"},
                  with_csrf=False)
    assert answer.status_code == 403
    assert lang_row(conn, regs["ana"])["language"] is None
