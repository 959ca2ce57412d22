"""request_notification and notification_timeline called as PostgREST calls them:
SET ROLE to the JWT's role, request.jwt.claims set, then `SELECT public.fn(...)`.

Runs on the vanilla, the Supabase-like and the plain-owner database.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.pg import as_role, new_registration
from tests.quiet_helpers import set_quiet_window

ANA, BEN = "+15552220001", "+15552220002"
ADMIN = {"sub": "staff-7", "role": "authenticated", "app_metadata": {"role": "admin"}}
SERVICE = {"role": "service_role"}


def customer(phone: str) -> dict[str, Any]:
    return {"sub": f"user-{phone[-4:]}", "role": "authenticated", "phone": phone.lstrip("+")}


@pytest.fixture(params=["vanilla", "supabase", "plain"])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "vanilla":
        return request.getfixturevalue("pg_cluster").url
    return request.getfixturevalue(f"{request.param}_database_url")


@pytest.fixture()
def ana_and_ben(conn) -> dict[str, str]:
    """Two customers, each with a burst, a sent text, a held text, a fallback, a pref change."""
    ids = {}
    for key, phone in (("ana", ANA), ("ben", BEN)):
        reg = new_registration(conn, customer_phone=phone, customer_name=key.title(),
                               customer_email=f"{key}@example.com")
        conn.execute("UPDATE registrations SET current_stage = 'documents_collected' "
                     "WHERE id = %s", (reg,))
        queue_id = conn.execute("SELECT id FROM notification_queue WHERE registration_id = %s",
                                (reg,)).fetchone()["id"]
        failed = conn.execute(
            "INSERT INTO registration_notifications (registration_id, queue_id, channel, "
            "recipient, status, error_code) VALUES (%s, %s, 'sms', %s, 'undelivered', '30003') "
            "RETURNING id", (reg, queue_id, phone)).fetchone()["id"]
        conn.execute(
            "INSERT INTO registration_notifications (registration_id, queue_id, channel, "
            "recipient, status, fallback_for) VALUES (%s, %s, 'email', %s, 'sent', %s)",
            (reg, queue_id, f"{key}@example.com", failed))
        conn.execute(
            "INSERT INTO registration_notifications (registration_id, channel, recipient, "
            "status, hold_reason, held_until, hold_zone) VALUES (%s, 'sms', %s, 'queued', "
            "'quiet_hours', now() + interval '1 hour', 'America/Chicago')", (reg, phone))
        ids[key] = reg
    with as_role_committed(conn, ADMIN):
        conn.execute("UPDATE registrations SET notification_pref = 'sms' WHERE id = %s",
                     (ids["ana"],))
    return ids


class as_role_committed:
    """Run statements on `conn` (autocommit) with claims set for the session, then clear them."""

    def __init__(self, conn: psycopg.Connection, claims: dict[str, Any]) -> None:
        self.conn, self.claims = conn, claims

    def __enter__(self) -> None:
        self.conn.execute("SELECT set_config('request.jwt.claims', %s, false)",
                          (json.dumps(self.claims),))

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("SELECT set_config('request.jwt.claims', '', false)")


def timeline(url: str, role: str, claims: dict[str, Any], reg: str) -> dict | None:
    with as_role(url, role, claims) as c:
        return c.execute("SELECT public.notification_timeline(%s) AS t", (reg,)).fetchone()["t"]


def notify(url: str, role: str, claims: dict[str, Any], reg: str, bypass: bool = False,
           ) -> dict:
    with as_role(url, role, claims) as c:
        got = c.execute("SELECT public.request_notification(%s, %s) AS a",
                        (reg, bypass)).fetchone()["a"]
        c.commit()
        return got


def kinds(doc: dict) -> set[str]:
    return {e["kind"] for e in doc["events"]}


# ── notification_timeline ────────────────────────────────────────────────────


def test_customer_sees_their_whole_timeline_and_nothing_else(database_url, ana_and_ben):
    doc = timeline(database_url, "authenticated", customer(ANA), ana_and_ben["ana"])
    assert doc["registration_id"] == ana_and_ben["ana"]
    assert doc["registration"]["customer_phone"] == ANA
    assert kinds(doc) == {"stage_change", "message", "hold", "fallback", "preference_change"}
    messages = [e for e in doc["events"] if e["kind"] == "message"]
    assert {m["recipient"] for m in messages} == {ANA, "ana@example.com"}
    fallback = next(e for e in doc["events"] if e["kind"] == "fallback")
    assert (fallback["failed_channel"], fallback["failed_error_code"]) == ("sms", "30003")
    change = next(e for e in doc["events"] if e["kind"] == "preference_change")
    # The customer learns that staff changed it, not which staff member.
    assert (change["changed_by_kind"], change["changed_by"]) == ("staff", None)
    text = json.dumps(doc)
    assert BEN not in text and "ben@example.com" not in text
    # Ben's registration does not exist, as far as Ana can tell.
    assert timeline(database_url, "authenticated", customer(ANA), ana_and_ben["ben"]) is None


def test_events_are_in_time_order(database_url, ana_and_ben):
    doc = timeline(database_url, "authenticated", ADMIN, ana_and_ben["ana"])
    times = [e["at"] for e in doc["events"]]
    assert times == sorted(times)


@pytest.mark.parametrize("who", ["admin", "service"])
def test_staff_and_backend_see_every_timeline(database_url, ana_and_ben, who):
    role, claims = ("authenticated", ADMIN) if who == "admin" else ("service_role", SERVICE)
    for key in ("ana", "ben"):
        doc = timeline(database_url, role, claims, ana_and_ben[key])
        assert doc is not None and doc["registration"]["customer_name"] == key.title()
    doc = timeline(database_url, role, claims, ana_and_ben["ana"])
    change = next(e for e in doc["events"] if e["kind"] == "preference_change")
    assert change["changed_by"] == "staff-7"


def test_unknown_registration_is_null(database_url, ana_and_ben):
    assert timeline(database_url, "authenticated", ADMIN,
                    "00000000-0000-0000-0000-000000000000") is None


@pytest.mark.parametrize("fn", ["notification_timeline(%s)", "request_notification(%s)"])
def test_anon_may_not_call_either(database_url, ana_and_ben, fn):
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(
        database_url, "anon", {"role": "anon"}
    ) as c:
        c.execute(f"SELECT public.{fn}", (ana_and_ben["ana"],))


# ── request_notification ─────────────────────────────────────────────────────


def _pending(conn, reg: str) -> list[dict]:
    return conn.execute("SELECT old_stage, new_stage, send_after <= now() AS due, "
                        "bypass_quiet_hours FROM notification_queue "
                        "WHERE registration_id = %s AND NOT sent", (reg,)).fetchall()


@pytest.mark.parametrize("who", ["customer-own", "customer-other"])
def test_a_customer_cannot_notify(database_url, conn, ana_and_ben, who):
    reg = ana_and_ben["ana" if who == "customer-own" else "ben"]
    conn.execute("UPDATE notification_queue SET sent = true")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(
        database_url, "authenticated", customer(ANA)
    ) as c:
        c.execute("SELECT public.request_notification(%s)", (reg,))
    assert _pending(conn, reg) == []


@pytest.mark.parametrize("who", ["admin", "service"])
def test_staff_and_backend_queue_a_message_due_now(database_url, conn, ana_and_ben, who):
    role, claims = ("authenticated", ADMIN) if who == "admin" else ("service_role", SERVICE)
    reg = ana_and_ben["ben"]
    conn.execute("UPDATE notification_queue SET sent = true")
    conn.execute("LISTEN notification_tick")
    answer = notify(database_url, role, claims, reg)
    assert answer == {"queued": True, "channels": ["sms", "email"], "skipped": [],
                      "bypass_quiet_hours": False}
    assert _pending(conn, reg) == [{"old_stage": None, "new_stage": "documents_collected",
                                    "due": True, "bypass_quiet_hours": False}]
    # The wake-up reached a LISTENing relay (NOTIFY is delivered at commit).
    assert [n.channel for n in conn.notifies(timeout=2, stop_after=1)] == ["notification_tick"]


def test_a_pending_burst_is_made_due_rather_than_doubled(database_url, conn, ana_and_ben):
    reg = ana_and_ben["ana"]
    conn.execute("UPDATE registrations SET current_stage = 'submitted_to_dmv' WHERE id = %s",
                 (reg,))
    notify(database_url, "authenticated", ADMIN, reg, bypass=True)
    # One row: the burst keeps its first old stage and becomes due now.
    assert _pending(conn, reg) == [{"old_stage": "sale_complete",
                                    "new_stage": "submitted_to_dmv", "due": True,
                                    "bypass_quiet_hours": True}]


@pytest.mark.parametrize("change, reason, channels", [
    ("UPDATE registrations SET notification_pref = 'none' WHERE id = %(r)s", "preference", []),
    ("UPDATE registrations SET customer_phone = NULL, customer_email = NULL WHERE id = %(r)s",
     "no_contact", []),
    ("INSERT INTO sms_opt_outs (phone, source) VALUES ('+15552220002', 'test')",
     "opted_out", ["email"]),
])
def test_says_why_nothing_or_less_will_be_sent(database_url, conn, ana_and_ben, change,
                                               reason, channels):
    reg = ana_and_ben["ben"]
    conn.execute("UPDATE notification_queue SET sent = true")
    conn.execute(change, {"r": reg})
    answer = notify(database_url, "authenticated", ADMIN, reg)
    if channels:
        assert answer["queued"] and answer["channels"] == channels
        assert [s["reason"] for s in answer["skipped"]] == [reason]
    else:
        assert answer["queued"] is False and answer["reason"] == reason and answer["detail"]
        assert _pending(conn, reg) == []


def test_names_the_end_of_a_quiet_hours_hold(database_url, conn, ana_and_ben):
    set_quiet_window(conn, "America/Chicago", -60, 3600)
    conn.execute("UPDATE notification_config SET default_time_zone = 'America/Chicago'")
    answer = notify(database_url, "authenticated", ADMIN, ana_and_ben["ben"])
    assert answer["queued"] and answer["held_channels"] == ["sms"]
    assert answer["time_zone"] == "America/Chicago" and answer["held_until_local"]
    assert "held_until" not in notify(database_url, "authenticated", ADMIN,
                                      ana_and_ben["ben"], bypass=True)


def test_unknown_registration_is_no_data_found(database_url, ana_and_ben):
    with pytest.raises(psycopg.errors.NoDataFound), as_role(
        database_url, "authenticated", ADMIN
    ) as c:
        c.execute("SELECT public.request_notification('00000000-0000-0000-0000-000000000000')")


def test_after_a_phone_change_the_new_number_sees_none_of_the_old_texts(
    database_url, conn, ana_and_ben
):
    new_phone = "+15552229999"
    conn.execute("UPDATE registrations SET customer_phone = %s WHERE id = %s",
                 (new_phone, ana_and_ben["ana"]))
    doc = timeline(database_url, "authenticated", customer(new_phone), ana_and_ben["ana"])
    assert doc is not None and ANA not in json.dumps(doc)
    assert timeline(database_url, "authenticated", customer(ANA), ana_and_ben["ana"]) is None
