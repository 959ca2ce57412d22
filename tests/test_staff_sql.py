"""Migration 21 in SQL: admin rights from regnotify's tokens last only while the member is
active, customers reach none of the console's functions, and what staff do is recorded and
shows in the timeline. On the vanilla and the Supabase-like database."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.pg import as_role, new_registration
from tests.staff_helpers import staff_claims as _claims

pytest_plugins = ["tests.staff_helpers"]

ANA, BEN = "+17135550101", "+17135550102"
STAFF = "sam@dealer.example"


def staff_claims(email: str = STAFF, iss: str = "regnotify") -> dict[str, Any]:
    return _claims(email, iss)


def customer(phone: str) -> dict[str, Any]:
    return {"sub": "c-" + phone, "role": "authenticated", "phone": phone.lstrip("+"),
            "iss": "regnotify"}


@pytest.fixture()
def database_url(each_database_url: str) -> str:
    return each_database_url


@pytest.fixture()
def regs(conn) -> dict[str, str]:
    conn.execute("INSERT INTO staff_members (email, name) VALUES (%s, 'Sam Staff')", (STAFF,))
    return {"ana": new_registration(conn, customer_name="Ana Lopez", customer_phone=ANA,
                                    customer_email="Ana@Example.com", vin="1HGCM82633A004352"),
            "ben": new_registration(conn, customer_name="Ben Ortiz", customer_phone=BEN,
                                    customer_email="ben@example.com")}


def failed_delivery(conn, reg: str, *, unknown: bool = False) -> int:
    return conn.execute(
        "INSERT INTO registration_notifications (registration_id, channel, recipient, status, "
        "attempts, error_code, error_message, outcome_unknown) VALUES "
        "(%s, 'sms', %s, 'failed', 3, %s, 'Unreachable destination handset', %s) RETURNING id",
        (reg, ANA, "outcome_unknown" if unknown else "30003", unknown)).fetchone()["id"]


def visible(url: str, claims: dict[str, Any]) -> int:
    with as_role(url, "authenticated", claims) as c:
        return c.execute("SELECT count(*) AS n FROM registrations").fetchone()["n"]


def test_an_active_members_token_is_admin_and_a_removed_ones_stops_at_the_next_statement(
        database_url, conn, regs):
    assert visible(database_url, staff_claims()) == 2
    with as_role(database_url, "authenticated", staff_claims()) as c:
        assert c.execute("SELECT public.staff_me() AS me").fetchone()["me"] == {
            "email": STAFF, "name": "Sam Staff"}
    conn.execute("UPDATE staff_members SET active = false, removed_at = now() WHERE email = %s",
                 (STAFF,))
    # The same token, unchanged and unexpired: nothing any more.
    assert visible(database_url, staff_claims()) == 0
    with as_role(database_url, "authenticated", staff_claims()) as c:
        assert c.execute("SELECT public.staff_me() AS me").fetchone()["me"] is None


def test_a_non_members_regnotify_admin_token_is_nothing(database_url, regs):
    assert visible(database_url, staff_claims("eve@elsewhere.example")) == 0
    # No e-mail at all: nothing either.
    claims = staff_claims()
    del claims["email"]
    assert visible(database_url, claims) == 0


def test_supabase_admin_tokens_keep_working_as_before(database_url, regs):
    claims = staff_claims("not-a-member@x.example", iss="https://proj.supabase.co/auth/v1")
    assert visible(database_url, claims) == 2


def test_the_e_mail_claim_matches_whatever_its_case(database_url, regs):
    assert visible(database_url, staff_claims(STAFF.upper())) == 2


@pytest.mark.parametrize("call", [
    "SELECT regnotify_staff.find_registrations('+17135550101', NULL, NULL, NULL)",
    "SELECT regnotify_staff.resend(1)",
    "SELECT regnotify_staff.mark_handled('reply', 1)",
    "SELECT regnotify_staff.record_action(NULL, 'resend', '{}')",
])
def test_a_customer_reaches_none_of_the_consoles_functions(database_url, regs, call):
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(
            database_url, "authenticated", customer(ANA)) as c:
        c.execute(call)


def test_anon_cannot_even_see_the_consoles_schema(database_url, regs):
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(
            database_url, "anon", {}) as c:
        c.execute("SELECT regnotify_staff.find_registrations('+17135550101', NULL, NULL, NULL)")


def test_a_customer_is_no_staff_member_and_sees_no_staff_actions(database_url, conn, regs):
    with as_role(database_url, "authenticated", customer(ANA)) as c:
        assert c.execute("SELECT public.staff_me() AS me").fetchone()["me"] is None
        assert c.execute("SELECT count(*) AS n FROM staff_members").fetchone()["n"] == 0


@pytest.mark.parametrize(("phone", "email", "vin", "name", "who"), [
    ("+17135550101", None, None, None, "ana"),
    (None, "ANA@example.COM", None, None, "ana"),
    (None, None, "1HGCM826", None, "ana"),
    (None, None, None, "'ana':* & 'lo':*", "ana"),
    (None, None, None, "'ortiz':*", "ben"),
])
def test_find_registrations_by_each_kind(database_url, regs, phone, email, vin, name, who):
    with as_role(database_url, "authenticated", staff_claims()) as c:
        got = [str(r["f"]) for r in c.execute(
            "SELECT f FROM regnotify_staff.find_registrations(%s, %s, %s, %s) AS f",
            (phone, email, vin, name))]
    assert got == [regs[who]]


def test_a_vin_search_treats_wildcards_as_letters(database_url, regs):
    with as_role(database_url, "authenticated", staff_claims()) as c:
        assert c.execute("SELECT count(*) AS n FROM regnotify_staff.find_registrations("
                         "NULL, NULL, '%', NULL)").fetchone()["n"] == 0


def test_resend_requeues_a_failed_delivery_and_records_who(database_url, conn, regs):
    failed = failed_delivery(conn, regs["ana"])
    with as_role(database_url, "authenticated", staff_claims()) as c:
        answer = c.execute("SELECT regnotify_staff.resend(%s) AS a", (failed,)).fetchone()["a"]
        assert answer == {"id": failed, "channel": "sms", "registration_id": regs["ana"]}
        # A second press finds it queued: nothing to do.
        assert c.execute("SELECT regnotify_staff.resend(%s) AS a",
                         (failed,)).fetchone()["a"] is None
        row = c.execute("SELECT status, error_code, handled_at IS NOT NULL AS handled "
                        "FROM registration_notifications WHERE id = %s", (failed,)).fetchone()
        assert row == {"status": "queued", "error_code": None, "handled": True}
        doc = c.execute("SELECT notification_timeline(%s) AS d", (regs["ana"],)).fetchone()["d"]
        c.commit()
    actions = [e for e in doc["events"] if e["kind"] == "staff_action"]
    assert [(a["action"], a["actor_email"], a["detail"]["delivery_id"]) for a in actions] == [
        ("resend", STAFF, failed)]
    # The customer's own timeline shows no staff action.
    with as_role(database_url, "authenticated", customer(ANA)) as c:
        doc = c.execute("SELECT notification_timeline(%s) AS d", (regs["ana"],)).fetchone()["d"]
    assert doc is not None and not [e for e in doc["events"] if e["kind"] == "staff_action"]


def test_a_removed_member_can_no_longer_act(database_url, conn, regs):
    failed = failed_delivery(conn, regs["ana"])
    conn.execute("UPDATE staff_members SET active = false WHERE email = %s", (STAFF,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(
            database_url, "authenticated", staff_claims()) as c:
        c.execute("SELECT regnotify_staff.resend(%s)", (failed,))
    assert conn.execute("SELECT status FROM registration_notifications WHERE id = %s",
                        (failed,)).fetchone()["status"] == "failed"


def test_send_now_and_silence_are_recorded_and_go_through_the_callers_rls(
        database_url, conn, regs):
    with as_role(database_url, "authenticated", staff_claims()) as c:
        answer = c.execute("SELECT regnotify_staff.send_now(%s, true) AS a",
                           (regs["ben"],)).fetchone()["a"]
        assert answer["queued"] is True and answer["bypass_quiet_hours"] is True
        assert c.execute("SELECT regnotify_staff.silence_next(%s) AS ok",
                         (regs["ben"],)).fetchone()["ok"] is True
        c.commit()
    assert conn.execute("SELECT pending_notify_customer FROM registrations WHERE id = %s",
                        (regs["ben"],)).fetchone()["pending_notify_customer"] is False
    rows = conn.execute("SELECT action, actor_email, detail FROM staff_actions "
                        "WHERE registration_id = %s ORDER BY id", (regs["ben"],)).fetchall()
    assert [(r["action"], r["actor_email"]) for r in rows] == [
        ("send_now", STAFF), ("silence_next", STAFF)]
    assert rows[0]["detail"]["bypass_quiet_hours"] is True
    queued = conn.execute("SELECT bypass_quiet_hours FROM notification_queue "
                          "WHERE registration_id = %s AND NOT sent", (regs["ben"],)).fetchone()
    assert queued["bypass_quiet_hours"] is True


def test_mark_handled_once_with_who_and_when(database_url, conn, regs):
    reply = conn.execute(
        "INSERT INTO inbound_messages (message_sid, from_phone, body, registration_id) "
        "VALUES ('SM1', %s, 'When are my plates ready?', %s) RETURNING id",
        (ANA, regs["ana"])).fetchone()["id"]
    with as_role(database_url, "authenticated", staff_claims()) as c:
        assert c.execute("SELECT regnotify_staff.mark_handled('reply', %s) AS ok",
                         (reply,)).fetchone()["ok"] is True
        assert c.execute("SELECT regnotify_staff.mark_handled('reply', %s) AS ok",
                         (reply,)).fetchone()["ok"] is False
        c.commit()
    row = conn.execute("SELECT handled_at FROM inbound_messages WHERE id = %s",
                       (reply,)).fetchone()
    assert row["handled_at"] is not None
    # Who: only in the staff log (the reply's customer may read the row itself).
    who = conn.execute("SELECT actor_email, detail FROM staff_actions WHERE action = "
                       "'mark_handled'").fetchall()
    assert who == [{"actor_email": STAFF, "detail": {"kind": "reply", "id": reply}}]


def test_staff_members_are_out_of_the_apis_write_reach(database_url, regs):
    for role, claims in (("authenticated", staff_claims()), ("service_role", {})):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(
                database_url, role, claims) as c:
            c.execute("INSERT INTO staff_members (email, name) VALUES ('x@y.example', 'X')")


def test_a_non_members_regnotify_admin_token_may_not_request_a_notification(
        database_url, conn, regs):
    stranger = staff_claims("eve@elsewhere.example")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(
            database_url, "authenticated", stranger) as c:
        c.execute("SELECT public.request_notification(%s, false)", (regs["ben"],))
    conn.execute("UPDATE staff_members SET active = false WHERE email = %s", (STAFF,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(
            database_url, "authenticated", staff_claims()) as c:
        c.execute("SELECT public.request_notification(%s, false)", (regs["ben"],))
    assert conn.execute("SELECT count(*) AS n FROM notification_queue WHERE registration_id = "
                        "%s AND NOT sent AND send_after <= now()", (regs["ben"],)
                        ).fetchone()["n"] == 0
    # An active member, Supabase's admins and the backend still may.
    conn.execute("UPDATE staff_members SET active = true WHERE email = %s", (STAFF,))
    for role, claims in (("authenticated", staff_claims()),
                         ("authenticated", staff_claims("eve@elsewhere.example",
                                                        iss="https://x.supabase.co/auth/v1")),
                         ("service_role", {"role": "service_role"})):
        with as_role(database_url, role, claims) as c:
            answer = c.execute("SELECT public.request_notification(%s, false) AS a",
                               (regs["ben"],)).fetchone()["a"]
            assert answer["queued"] is True, (role, claims)


def test_a_non_members_regnotify_admin_token_is_a_customer_to_the_timeline(database_url, regs):
    cases = ((staff_claims("eve@elsewhere.example"), True), (staff_claims(), False),
             (customer(ANA), True))
    for claims, is_customer in cases:
        with as_role(database_url, "authenticated", claims) as c:
            assert c.execute("SELECT public.timeline_caller_is_customer() AS v"
                             ).fetchone()["v"] is is_customer, claims
    with as_role(database_url, "service_role", {"role": "service_role"}) as c:
        assert c.execute("SELECT public.timeline_caller_is_customer() AS v"
                         ).fetchone()["v"] is False


def test_a_customer_reads_no_staff_identity_on_their_own_rows(database_url, conn, regs):
    failed = failed_delivery(conn, regs["ana"])
    reply = conn.execute(
        "INSERT INTO inbound_messages (message_sid, from_phone, body, registration_id) "
        "VALUES ('SM2', %s, 'Ready yet?', %s) RETURNING id", (ANA, regs["ana"])).fetchone()["id"]
    with as_role(database_url, "authenticated", staff_claims()) as c:
        c.execute("SELECT regnotify_staff.resend(%s)", (failed,))
        c.execute("SELECT regnotify_staff.mark_handled('reply', %s)", (reply,))
        c.commit()
    with as_role(database_url, "authenticated", customer(ANA)) as c:
        rows = [*c.execute("SELECT * FROM registration_notifications").fetchall(),
                *c.execute("SELECT * FROM inbound_messages").fetchall()]
        assert {r["id"] for r in rows} >= {failed, reply}
        assert not [r for r in rows if any(STAFF in str(v) for v in r.values())], rows
        assert c.execute("SELECT count(*) AS n FROM staff_actions").fetchone()["n"] == 0
