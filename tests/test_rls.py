"""Row-level security as PostgREST would run it: a role plus request.jwt.claims.

Runs on the vanilla and on the Supabase-like database (default privileges
granting ALL to the API roles).
"""

from __future__ import annotations

import psycopg
import pytest

from tests.pg import as_role, new_registration


@pytest.fixture()
def database_url(each_database_url: str) -> str:
    return each_database_url

DANA = "+15551230001"
EVE = "+15559870002"
ADMIN = {"sub": "staff-1", "role": "authenticated", "app_metadata": {"role": "admin"}}


def customer(phone: str) -> dict:
    # Supabase's phone claim is E.164 without the '+'.
    return {"sub": f"user-{phone}", "role": "authenticated", "phone": phone.lstrip("+")}


@pytest.fixture()
def two_customers(conn):
    dana = new_registration(conn, customer_phone=DANA, customer_name="Dana")
    eve = new_registration(conn, customer_phone=EVE, customer_name="Eve",
                           customer_email="eve@example.com")
    for reg, phone in ((dana, DANA), (eve, EVE)):
        conn.execute("UPDATE registrations SET current_stage = 'documents_collected' "
                     "WHERE id = %s", (reg,))
        conn.execute(
            "INSERT INTO registration_notifications (registration_id, channel, recipient, status)"
            " VALUES (%s, 'sms', %s, 'sent')", (reg, phone))
    return dana, eve


def test_customer_sees_only_own_registrations(database_url, two_customers):
    dana, _ = two_customers
    with as_role(database_url, "authenticated", customer(DANA)) as c:
        rows = c.execute("SELECT id FROM registrations").fetchall()
    assert [str(r["id"]) for r in rows] == [dana]


def test_customer_sees_only_own_notifications(database_url, two_customers):
    dana, _ = two_customers
    with as_role(database_url, "authenticated", customer(DANA)) as c:
        rows = c.execute("SELECT registration_id FROM registration_notifications").fetchall()
    assert [str(r["registration_id"]) for r in rows] == [dana]


def test_another_phone_sees_nothing(database_url, two_customers):
    with as_role(database_url, "authenticated", customer("+15550000000")) as c:
        assert c.execute("SELECT * FROM registrations").fetchall() == []
        assert c.execute("SELECT * FROM registration_notifications").fetchall() == []
        assert c.execute("SELECT * FROM notification_queue").fetchall() == []


def test_anon_sees_nothing(database_url, two_customers):
    for table in ("registrations", "registration_notifications", "notification_queue"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(
            database_url, "anon"
        ) as c:
            c.execute(f"SELECT * FROM {table}")


def test_customer_sees_only_own_queue_rows(database_url, two_customers):
    # Their own bursts are part of their timeline (stages and times, no contact).
    dana, _ = two_customers
    with as_role(database_url, "authenticated", customer(DANA)) as c:
        rows = c.execute("SELECT registration_id FROM notification_queue").fetchall()
    assert [str(r["registration_id"]) for r in rows] == [dana]


def test_customer_cannot_update_anything_but_their_preference(database_url, two_customers):
    dana, _ = two_customers
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(
        database_url, "authenticated", customer(DANA)
    ) as c:
        c.execute("UPDATE registrations SET notification_pref = 'none', "
                  "current_stage = 'sticker_delivered' WHERE id = %s", (dana,))
    for sql in ("UPDATE registration_notifications SET status = 'delivered'",
                "DELETE FROM registration_notifications"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(
            database_url, "authenticated", customer(DANA)
        ) as c:
            c.execute(sql)
    with as_role(database_url, "authenticated", customer(DANA)) as c:
        assert c.execute("UPDATE notification_queue SET sent = true").rowcount == 0


def test_admin_has_full_access_to_queue(database_url, two_customers):
    with as_role(database_url, "authenticated", ADMIN) as c:
        assert len(c.execute("SELECT * FROM notification_queue").fetchall()) == 2
        assert c.execute("UPDATE notification_queue SET send_after = now()").rowcount == 2
        assert c.execute("DELETE FROM notification_queue").rowcount == 2


def test_admin_stage_change_queues_through_definer_trigger(database_url, two_customers):
    dana, _ = two_customers
    with as_role(database_url, "authenticated", ADMIN) as c:
        n = c.execute("UPDATE registrations SET current_stage = 'dmv_processing' "
                      "WHERE id = %s", (dana,)).rowcount
        assert n == 1
        row = c.execute("SELECT new_stage FROM notification_queue WHERE registration_id = %s "
                        "AND NOT sent", (dana,)).fetchone()
        assert row["new_stage"] == "dmv_processing"


def test_grants_are_what_each_role_needs_and_rls_decides_rows(conn):
    # anon: nothing on these tables. authenticated: what customers and admins
    # use, RLS choosing the rows. No TRUNCATE for either.
    want = {
        ("anon", "registrations"): set(),
        ("anon", "registration_notifications"): set(),
        ("anon", "notification_queue"): set(),
        ("authenticated", "registrations"): {"SELECT", "INSERT", "DELETE"},
        ("authenticated", "registration_notifications"): {"SELECT"},
        ("authenticated", "notification_queue"): {"SELECT", "INSERT", "UPDATE", "DELETE"},
    }
    for (role, table), privs in want.items():
        got = {p for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES",
                           "TRIGGER")
               if conn.execute("SELECT has_table_privilege(%s, %s, %s) AS ok",
                               (role, f"public.{table}", p)).fetchone()["ok"]}
        assert got == privs, (role, table)
    enabled = conn.execute(
        "SELECT relname, relrowsecurity FROM pg_class WHERE relname IN "
        "('registrations','registration_notifications','notification_queue')").fetchall()
    assert all(r["relrowsecurity"] for r in enabled)


def test_customer_cannot_read_relay_token(database_url, conn):
    conn.execute("UPDATE notification_config SET relay_token = 's3cret'")
    with as_role(database_url, "authenticated", ADMIN) as c, pytest.raises(
        psycopg.errors.InsufficientPrivilege
    ):
        c.execute("SELECT relay_token FROM notification_config")
