"""The whole access matrix: role x table x statement, against what each role should get.

Each cell runs in its own transaction as the role (with PostgREST-style JWT
claims) and is rolled back. A cell is the number of rows the statement saw or
changed, or DENIED when PostgreSQL refused it (no grant, or a row-level
security WITH CHECK failure). The matrix holds on the vanilla database and on
the Supabase-like one, whose default privileges grant ALL to every API role.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.pg import as_role, new_registration


@pytest.fixture()
def database_url(each_database_url: str) -> str:
    return each_database_url


DENIED = "denied"
ANA, BEN = "+15551110001", "+15551110002"
STAGES = 7

ROLES = {
    "anon": ("anon", {"role": "anon"}),
    "customer": ("authenticated", {"sub": "u-ana", "role": "authenticated",
                                   "phone": ANA.lstrip("+")}),
    "other_customer": ("authenticated", {"sub": "u-ben", "role": "authenticated",
                                         "phone": BEN.lstrip("+")}),
    "admin": ("authenticated", {"sub": "staff", "role": "authenticated",
                                "app_metadata": {"role": "admin"}}),
    "service_role": ("service_role", {"role": "service_role"}),
}

TABLES = ["registrations", "registration_notifications", "notification_queue",
          "notification_config", "sms_opt_outs", "webhook_events", "registration_stages",
          "notification_pref_changes"]

# What each role may do: (SELECT rows, INSERT, UPDATE rows, DELETE rows).
_NOTHING = (0, DENIED, 0, 0)          # granted, but RLS shows and touches nothing
_NO_GRANT = (DENIED, DENIED, DENIED, DENIED)
_STAGES_READ = (STAGES, DENIED, DENIED, DENIED)
_READ_ONLY = (2, DENIED, DENIED, DENIED)
EXPECTED: dict[str, dict[str, tuple]] = {
    # anon reaches nothing but the stage labels: no grant, not merely no rows.
    "anon": {
        "registrations": _NO_GRANT, "registration_notifications": _NO_GRANT,
        "notification_queue": _NO_GRANT, "notification_config": _NO_GRANT,
        "sms_opt_outs": _NO_GRANT, "webhook_events": _NO_GRANT,
        "registration_stages": _STAGES_READ, "notification_pref_changes": _NO_GRANT,
    },
    # A customer may UPDATE their own row (the guard trigger limits them to
    # notification_pref; this no-op UPDATE passes it), never delete or insert.
    # They read their own bursts and preference changes (their timeline).
    # sms_opt_outs and notification_config grant a few columns only (migration
    # 13), so SELECT * is refused; test_front_door_sql checks those columns.
    "customer": {
        "registrations": (1, DENIED, 1, 0),
        "registration_notifications": (1, DENIED, DENIED, DENIED),
        "notification_queue": (1, DENIED, 0, 0), "notification_config": _NO_GRANT,
        "sms_opt_outs": _NO_GRANT, "webhook_events": _NO_GRANT,
        "registration_stages": _STAGES_READ,
        "notification_pref_changes": (1, DENIED, DENIED, DENIED),
    },
    "admin": {
        "registrations": (2, 1, 2, 2), "registration_notifications": _READ_ONLY,
        "notification_queue": (2, 1, 2, 2), "notification_config": _NO_GRANT,
        "sms_opt_outs": _NO_GRANT, "webhook_events": _NO_GRANT,
        "registration_stages": _STAGES_READ, "notification_pref_changes": _READ_ONLY,
    },
    "service_role": {
        "registrations": (2, 1, 2, 2), "registration_notifications": (2, 1, 2, 2),
        "notification_queue": (2, 1, 2, 2), "notification_config": (1, DENIED, 1, DENIED),
        "sms_opt_outs": (1, 1, 1, 1), "webhook_events": (1, 1, 1, 1),
        "registration_stages": _STAGES_READ, "notification_pref_changes": _READ_ONLY,
    },
}
EXPECTED["other_customer"] = EXPECTED["customer"]

INSERTS = {
    "registrations": "INSERT INTO registrations (customer_name) VALUES ('New')",
    "registration_notifications": "INSERT INTO registration_notifications "
                                  "(registration_id, channel) VALUES (%(ana)s, 'email')",
    "notification_queue": "INSERT INTO notification_queue (registration_id, new_stage, "
                          "send_after) VALUES (%(ana)s, 'sticker_ready', now())",
    "notification_config": "INSERT INTO notification_config (id) VALUES (true) "
                           "ON CONFLICT DO NOTHING",
    "sms_opt_outs": "INSERT INTO sms_opt_outs (phone, source) VALUES ('+15559990000', 't')",
    "webhook_events": "INSERT INTO webhook_events (provider, event_id) VALUES ('t', 'new')",
    "registration_stages": "INSERT INTO registration_stages (stage, position, label) "
                           "VALUES ('new', 99, 'New')",
    "notification_pref_changes": "INSERT INTO notification_pref_changes (registration_id, "
                                 "new_pref, changed_by_kind) VALUES (%(ana)s, 'sms', 'staff')",
}
UPDATES = {
    "registrations": "UPDATE registrations SET updated_at = updated_at",
    "registration_notifications": "UPDATE registration_notifications SET attempts = attempts",
    "notification_queue": "UPDATE notification_queue SET updated_at = updated_at",
    "notification_config": "UPDATE notification_config SET updated_at = updated_at",
    "sms_opt_outs": "UPDATE sms_opt_outs SET updated_at = updated_at",
    "webhook_events": "UPDATE webhook_events SET received_at = received_at",
    "registration_stages": "UPDATE registration_stages SET label = label",
    "notification_pref_changes": "UPDATE notification_pref_changes SET changed_at = changed_at",
}


@pytest.fixture()
def two_customers(conn) -> dict[str, str]:
    """Ana and Ben: a closed queue row, a delivery, a pref change each; an opt-out, an event."""
    ids = {}
    for key, phone in (("ana", ANA), ("ben", BEN)):
        reg = new_registration(conn, customer_phone=phone, customer_name=key.title())
        conn.execute("UPDATE registrations SET current_stage = 'documents_collected' "
                     "WHERE id = %s", (reg,))
        conn.execute("UPDATE notification_queue SET sent = true WHERE registration_id = %s",
                     (reg,))
        conn.execute("INSERT INTO registration_notifications (registration_id, channel, status)"
                     " VALUES (%s, 'sms', 'sent')", (reg,))
        conn.execute("UPDATE registrations SET notification_pref = 'sms' WHERE id = %s", (reg,))
        ids[key] = reg
    conn.execute("INSERT INTO sms_opt_outs (phone, source) VALUES ('+15559990001', 'test')")
    conn.execute("INSERT INTO webhook_events (provider, event_id) VALUES ('resend', 'msg_1')")
    return ids


def _cell(url: str, role: str, claims: dict, sql: str, params: dict, select: bool):
    try:
        with as_role(url, role, claims) as c:
            cur = c.execute(sql, params)
            return len(cur.fetchall()) if select else cur.rowcount
    except psycopg.errors.InsufficientPrivilege:
        return DENIED


@pytest.mark.parametrize("who", list(ROLES))
def test_access_matrix(database_url, two_customers, who):
    role, claims = ROLES[who]
    params = dict(two_customers)
    got = {}
    for table in TABLES:
        got[table] = (
            _cell(database_url, role, claims, f"SELECT * FROM {table}", params, True),
            _cell(database_url, role, claims, INSERTS[table], params, False),
            _cell(database_url, role, claims, UPDATES[table], params, False),
            _cell(database_url, role, claims, f"DELETE FROM {table}", params, False),
        )
    assert got == EXPECTED[who]


def test_no_truncate_for_anyone_but_the_owner(database_url, two_customers):
    for role in ("anon", "authenticated", "service_role"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(
            database_url, role, ROLES["admin"][1]
        ) as c:
            c.execute("TRUNCATE registration_stages CASCADE")


def test_customer_sees_their_own_rows_not_the_others(database_url, two_customers):
    role, claims = ROLES["customer"]
    with as_role(database_url, role, claims) as c:
        regs = c.execute("SELECT id FROM registrations").fetchall()
        notes = c.execute("SELECT registration_id FROM registration_notifications").fetchall()
    assert [str(r["id"]) for r in regs] == [two_customers["ana"]]
    assert [str(r["registration_id"]) for r in notes] == [two_customers["ana"]]
