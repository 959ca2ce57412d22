"""The staff console through its HTTP door: sign-in by an e-mailed code (console line,
Resend, Supabase Auth), the pages as the signed-in member, and what it refuses (each
changing nothing). On the vanilla and the Supabase-like database."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from tasks.auth.api_tokens import issue_session_token
from tasks.staff import signin_routes
from tasks.staff.signin import issue_staff_token
from tests.pg import new_registration
from tests.portal_helpers import SESSION_SECRET, csrf
from tests.relay_helpers import relay_settings

pytest_plugins = ["tests.portal_helpers", "tests.staff_helpers"]

STAFF = "sam@dealer.example"
ANA, BEN = "+17135550101", "+17135550102"
CODE_LINE = re.compile(r"staff sign-in code for (\S+): (\d{6})")


@pytest.fixture()
def database_url(each_database_url: str) -> str:
    # Every page and action on the vanilla and on the Supabase-like database
    # (a non-superuser owner under Supabase's default privileges).
    return each_database_url


@pytest.fixture(autouse=True)
def quick_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    # Short, but long enough for a local send to be done when the page answers
    # (a member's send is waited for up to the floor, then runs on behind it).
    monkeypatch.setattr(signin_routes, "SEND_FLOOR_S", 0.3)


@pytest.fixture(autouse=True)
def no_sign_ins_counted(redis_server) -> None:
    # The pipeline's relay counts sign-ins in its Redis, which outlives a test
    # (the PostgreSQL counters are emptied by portal_client).
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_server.url)
    for key in client.scan_iter("regnotify:signin:*"):
        client.delete(key)


def eventually(find: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """What `find` returns once it returns something (a send may finish after the answer)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = find()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture()
def regs(conn) -> dict[str, str]:
    conn.execute("INSERT INTO staff_members (email, name) VALUES (%s, 'Sam Staff')", (STAFF,))
    ana = new_registration(conn, customer_name="Ana Lopez", customer_phone=ANA,
                           customer_email="ana@example.com", vin="1HGCM82633A004352")
    ben = new_registration(conn, customer_name="Ben Ortiz", customer_phone=BEN,
                           customer_email="ben@example.com")
    for reg, phone, status, code in ((ana, ANA, "failed", "30003"), (ben, BEN, "sent", None)):
        conn.execute(
            "INSERT INTO registration_notifications (registration_id, channel, recipient, "
            "status, attempts, error_code, new_stage) VALUES (%s, 'sms', %s, %s, 1, %s, "
            "'sticker_ready')", (reg, phone, status, code))
    return {"ana": ana, "ben": ben}


def post(client, path: str, fields: dict[str, str], page: str | None = None, **kw: Any) -> Any:
    page = page if page is not None else client.get("/staff").text
    return client.post(path, data={"csrf": csrf(page), **fields}, follow_redirects=False, **kw)


def sign_in(client, capsys, email: str = STAFF, mailbox: Any = None) -> None:
    """Sign in with the code from the relay's output, or from the e-mail the Resend wire took."""
    sent = post(client, "/staff/code", {"email": email})
    assert sent.status_code == 200, sent.text
    if mailbox is None:
        line = eventually(lambda: CODE_LINE.findall(capsys.readouterr().out))
        assert line, "no staff sign-in line on the relay's output"
        code = line[-1][1]
    else:
        mail = eventually(lambda: [m for m in mailbox.sends() if m.to == email])[-1]
        code = re.search(r"code: (\d{6})", mail.subject).group(1)
    signed = post(client, "/staff/sign-in", {"email": email, "code": code}, sent.text)
    assert signed.status_code == 303 and signed.headers["location"] == "/staff", signed.text


def test_a_member_signs_in_with_the_console_code_and_finds_a_customer_by_phone(
        portal_client, regs, capsys):
    client = portal_client()
    page = client.get("/staff")
    assert page.status_code == 200 and 'name="email"' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    sent = post(client, "/staff/code", {"email": "Sam@Dealer.example"})
    out = capsys.readouterr().out
    found = CODE_LINE.search(out)
    assert found and found.group(1) == "s**@dealer.example" and STAFF not in out
    signed = post(client, "/staff/sign-in", {"email": STAFF, "code": found.group(2)}, sent.text)
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"]
    # Over https a `__Host-` cookie: only this origin sets it, Path=/ and Secure.
    assert cookie.startswith("__Host-rn_staff=") and "HttpOnly" in cookie
    assert "Path=/;" in cookie and "Secure" in cookie
    home = client.get("/staff")
    assert "Sam Staff" in home.text and "Ana Lopez" in home.text and "Ben Ortiz" in home.text
    # The header counts what needs attention: Ana's failed text.
    assert '<span class="count">1</span>' in home.text
    found_ana = client.get("/staff", params={"q": "(713) 555-0101"})
    assert "Ana Lopez" in found_ana.text and "Ben Ortiz" not in found_ana.text
    assert "the phone was off or out of reach (30003)" in found_ana.text
    for q in ("ana@EXAMPLE.com", "1HGCM826", "lopez", "ana lo"):
        hit = client.get("/staff", params={"q": q}).text
        assert "Ana Lopez" in hit and "Ben Ortiz" not in hit, q
    assert "No messages for that search." in client.get("/staff", params={"q": "zed"}).text
    failed_only = client.get("/staff", params={"status": "failed"}).text
    assert "Ana Lopez" in failed_only and "Ben Ortiz" not in failed_only


def test_a_non_member_gets_the_same_page_and_answer_and_no_code(portal_client, regs, capsys):
    client = portal_client()
    member = post(client, "/staff/code", {"email": STAFF})
    capsys.readouterr()
    other = post(client, "/staff/code", {"email": "eve@elsewhere.example"})
    assert other.status_code == member.status_code == 200
    assert CODE_LINE.search(capsys.readouterr().out) is None

    def strip(html: str, email: str) -> str:
        html = re.sub(r'name="csrf" value="[0-9a-f]+"', "", html)
        return html.replace(email, "E").replace("s**@dealer.example", "M").replace(
            "e**@elsewhere.example", "M")
    assert strip(member.text, STAFF) == strip(other.text, "eve@elsewhere.example")
    # And no code for it works.
    wrong = post(client, "/staff/sign-in", {"email": "eve@elsewhere.example",
                                             "code": "000000"}, other.text)
    assert wrong.status_code == 401 and "rn_staff=" not in wrong.headers.get("set-cookie", "")


def test_the_answer_takes_as_long_for_a_member_as_for_anyone(portal_client, regs, capsys,
                                                            monkeypatch):
    monkeypatch.setattr(signin_routes, "SEND_FLOOR_S", 0.4)
    client = portal_client()
    page = client.get("/staff").text
    times = {}
    for email in (STAFF, "eve@elsewhere.example"):
        started = time.monotonic()
        post(client, "/staff/code", {"email": email}, page)
        times[email] = time.monotonic() - started
    assert all(t >= 0.4 for t in times.values()), times


def test_a_removed_members_live_session_stops_at_its_next_request(
        portal_client, regs, capsys, conn):
    client = portal_client()
    sign_in(client, capsys)
    assert "Ana Lopez" in client.get("/staff").text
    conn.execute("UPDATE staff_members SET active = false, removed_at = now() WHERE email = %s",
                 (STAFF,))
    after = client.get("/staff")
    assert after.status_code == 403 and "Ana Lopez" not in after.text
    assert 'name="email"' in after.text
    # The refused cookie was dropped: the next page is the sign-in form.
    page = client.get(f"/staff/registrations/{regs['ana']}")
    assert "Ana Lopez" not in page.text and 'name="email"' in page.text


def test_a_customers_session_cannot_open_any_staff_page(portal_client, regs):
    client = portal_client()
    token = issue_session_token(relay_settings(session_secret=SESSION_SECRET), phone=ANA,
                                subject="c-ana")
    client.cookies.set("__Host-rn_staff", token, path="/")
    for path in ("/staff", f"/staff/registrations/{regs['ana']}", "/staff/attention",
                 "/staff/replies", "/staff/queue"):
        answer = client.get(path)
        assert answer.status_code == 403 and "Ana Lopez" not in answer.text, path


def test_a_token_for_a_non_member_opens_nothing(portal_client, regs):
    client = portal_client()
    settings = relay_settings(session_secret=SESSION_SECRET)
    client.cookies.set("__Host-rn_staff", issue_staff_token(settings, "eve@elsewhere.example"),
                       path="/")
    assert client.get("/staff/attention").status_code == 403


def test_actions_without_csrf_or_from_another_origin_change_nothing(
        portal_client, regs, capsys, conn):
    client = portal_client()
    sign_in(client, capsys)
    failed = conn.execute("SELECT id FROM registration_notifications WHERE status = 'failed'"
                          ).fetchone()["id"]
    page = client.get("/staff/attention").text
    no_token = client.post(f"/staff/deliveries/{failed}/resend", data={},
                           follow_redirects=False)
    assert no_token.status_code == 403
    bad_token = client.post(f"/staff/deliveries/{failed}/resend", data={"csrf": "0" * 64},
                            follow_redirects=False)
    assert bad_token.status_code == 403
    other = post(client, f"/staff/deliveries/{failed}/resend", {}, page,
                 headers={"Origin": "https://evil.example"})
    assert other.status_code == 403
    for site in ("cross-site", "same-site"):
        cross = post(client, f"/staff/registrations/{regs['ana']}/silence", {}, page,
                     headers={"Sec-Fetch-Site": site, "Origin": "null"})
        assert cross.status_code == 403, site
    assert conn.execute("SELECT status FROM registration_notifications WHERE id = %s",
                        (failed,)).fetchone()["status"] == "failed"
    assert conn.execute("SELECT pending_notify_customer AS p FROM registrations WHERE id = %s",
                        (regs["ana"],)).fetchone()["p"] is None
    assert conn.execute("SELECT count(*) AS n FROM staff_actions").fetchone()["n"] == 0


def test_registration_page_and_actions_are_recorded_in_its_timeline(
        portal_client, regs, capsys, conn, pipeline, resend_wire):
    client = portal_client()
    # The pipeline's environment names Resend: the code comes by e-mail.
    sign_in(client, capsys, mailbox=resend_wire)
    here = f"/staff/registrations/{regs['ana']}"
    page = client.get(here)
    assert page.status_code == 200
    assert "Ana Lopez" in page.text and "+17135550101" in page.text and "Re-send" in page.text
    silenced = post(client, f"{here}/silence", {}, page.text)
    assert silenced.status_code == 303 and silenced.headers["location"] == f"{here}?done=silenced"
    sent = post(client, f"{here}/send", {"bypass": "1"}, page.text)
    assert sent.status_code == 303 and sent.headers["location"] == f"{here}?done=sent"
    after = client.get(sent.headers["location"]).text
    assert "Staff: sam@dealer.example sent by hand (quiet hours bypassed)" in after
    assert "Staff: sam@dealer.example silenced the next stage change" in after
    # Eager Celery: the relay's tick claimed the row and sent it at once.
    assert conn.execute("SELECT bypass_quiet_hours AS b, sent FROM notification_queue "
                        "WHERE registration_id = %s", (regs["ana"],)
                        ).fetchone() == {"b": True, "sent": True}
    sent_now = conn.execute("SELECT channel, status FROM registration_notifications WHERE "
                            "registration_id = %s AND queue_id IS NOT NULL ORDER BY channel",
                            (regs["ana"],)).fetchall()
    assert sent_now == [{"channel": "email", "status": "sent"},
                        {"channel": "sms", "status": "sent"}]
    assert client.get("/staff/registrations/not-a-uuid").status_code == 404
    missing = client.get("/staff/registrations/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404


def test_attention_resend_and_mark_handled(portal_client, regs, capsys, conn, pipeline,
                                          resend_wire):
    conn.execute("INSERT INTO inbound_messages (message_sid, from_phone, body, registration_id) "
                 "VALUES ('SM1', %s, 'Are my plates ready?', %s)", (BEN, regs["ben"]))
    client = portal_client()
    sign_in(client, capsys, mailbox=resend_wire)
    page = client.get("/staff/attention")
    assert "Are my plates ready?" in page.text and "Ana Lopez" in page.text
    assert '<span class="count">2</span>' in page.text
    failed = conn.execute("SELECT id FROM registration_notifications WHERE status = 'failed'"
                          ).fetchone()["id"]
    again = post(client, f"/staff/deliveries/{failed}/resend", {"next": "/staff/attention"},
                 page.text)
    assert again.status_code == 303 and again.headers["location"] == "/staff/attention?done=resent"
    # Eager Celery here (the worker test runs a real worker): the send task
    # ran at once against the Twilio wire.
    row = conn.execute("SELECT status, attempts FROM registration_notifications WHERE id = %s",
                       (failed,)).fetchone()
    assert row == {"status": "sent", "attempts": 2}
    reply = conn.execute("SELECT id FROM inbound_messages").fetchone()["id"]
    handled = post(client, "/staff/handled", {"kind": "reply", "id": str(reply),
                                              "next": "https://evil.example/"}, page.text)
    assert handled.status_code == 303
    assert handled.headers["location"] == "/staff/attention?done=handled"
    replies = client.get("/staff/replies", params={"show": "handled"}).text
    assert "Handled by sam@dealer.example" in replies
    assert '<span class="count">0</span>' in replies


def test_queue_shows_bursts_waiting(portal_client, regs, capsys, conn):
    conn.execute("UPDATE registrations SET current_stage = 'documents_collected' WHERE id = %s",
                 (regs["ben"],))
    client = portal_client()
    sign_in(client, capsys)
    page = client.get("/staff/queue").text
    assert "Ben Ortiz" in page and "Sale complete → Documents collected" in page


def test_supabase_e_mail_otp_signs_in_a_member_with_the_admin_role(
        portal_client, regs, supabase_auth, conn):
    from tests.portal_helpers import supabase_settings

    client = portal_client(**supabase_settings(supabase_auth))
    supabase_auth.add_email_user(STAFF, admin=True)
    sent = post(client, "/staff/code", {"email": STAFF})
    assert sent.status_code == 200
    code = supabase_auth.last_email_code(STAFF)
    signed = post(client, "/staff/sign-in", {"email": STAFF, "code": code}, sent.text)
    assert signed.status_code == 303
    home = client.get("/staff")
    assert home.status_code == 200 and "Sam Staff" in home.text and "Ana Lopez" in home.text
    # Supabase's token: its issuer is the project's, and it is admin there.
    assert "__Host-rn_staff" in client.cookies


def test_supabase_e_mail_otp_without_the_admin_role_opens_nothing(
        portal_client, regs, supabase_auth):
    from tests.portal_helpers import supabase_settings

    client = portal_client(**supabase_settings(supabase_auth))
    supabase_auth.add_email_user(STAFF, admin=False)
    sent = post(client, "/staff/code", {"email": STAFF})
    signed = post(client, "/staff/sign-in",
                  {"email": STAFF, "code": supabase_auth.last_email_code(STAFF)}, sent.text)
    assert signed.status_code == 303
    page = client.get("/staff")
    assert page.status_code == 403 and "Ana Lopez" not in page.text


def test_supabase_gets_no_request_for_a_non_member(portal_client, regs, supabase_auth):
    from tests.portal_helpers import supabase_settings

    client = portal_client(**supabase_settings(supabase_auth))
    supabase_auth.add_email_user("eve@elsewhere.example", admin=True)
    answer = post(client, "/staff/code", {"email": "eve@elsewhere.example"})
    assert answer.status_code == 200 and "If e**@elsewhere.example belongs" in answer.text
    assert supabase_auth.sends() == []


def test_sign_out_ends_the_session(portal_client, regs, capsys):
    client = portal_client()
    sign_in(client, capsys)
    home = client.get("/staff").text
    out = post(client, "/staff/sign-out", {}, home)
    assert out.status_code == 303 and 'rn_staff=""' in out.headers["set-cookie"]
    assert "Ana Lopez" not in client.get("/staff").text


def test_out_of_range_dates_and_ids_get_one_clear_line(portal_client, regs, capsys, conn,
                                                       caplog):
    client = portal_client()
    # Before sign-in as after: the address is refused before anything is read.
    for params in ({"to": "9999-12-31"}, {"from": "2026-02-30"}, {"to": "soon"}):
        answer = client.get("/staff", params=params)
        assert answer.status_code == 400 and "must be a date like 2026-12-06" in answer.text
    sign_in(client, capsys)
    for cursor in ("2026-01-01T00:00:00+00:00_99999999999999999999", "yesterday_12",
                   "2026-01-01T00:00:00+00:00_-1"):
        answer = client.get("/staff", params={"before": cursor})
        assert answer.status_code == 400 and "first page" in answer.text, cursor
    page = client.get("/staff/attention").text
    big = str(2**63)
    answer = post(client, f"/staff/deliveries/{big}/resend", {}, page)
    assert answer.status_code == 400 and "no delivery&#x27;s number" in answer.text
    answer = post(client, "/staff/handled", {"kind": "reply", "id": big}, page)
    assert answer.status_code == 400 and "no message&#x27;s number" in answer.text
    assert "database unavailable" not in caplog.text
    # The largest id there is is a fine cursor: a page (empty past the newest).
    assert client.get("/staff", params={
        "before": f"2026-01-01T00:00:00+00:00_{2**63 - 1}"}).status_code == 200
    assert conn.execute("SELECT count(*) AS n FROM staff_actions").fetchone()["n"] == 0


def test_the_registration_page_says_why_nothing_was_queued_in_its_own_words(
        portal_client, regs, capsys, conn):
    conn.execute("UPDATE registrations SET notification_pref = 'none' WHERE id = %s",
                 (regs["ana"],))
    client = portal_client()
    sign_in(client, capsys)
    here = f"/staff/registrations/{regs['ana']}"
    sent = post(client, f"{here}/send", {}, client.get(here).text)
    assert sent.headers["location"] == f"{here}?done=not_queued&reason=preference"
    page = client.get(sent.headers["location"]).text
    assert "The customer chose no messages" in page
    # Text in the address is never shown: a link someone sends staff says nothing.
    forged = client.get(here, params={"done": "not_queued",
                                      "reason": "Call 1-800-SCAMMER to fix your account"})
    assert "SCAMMER" not in forged.text and forged.status_code == 200
