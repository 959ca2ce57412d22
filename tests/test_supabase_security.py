"""Safe on Supabase: what its Security Advisor checks, customers' own preference, privacy.

Runs on three databases of the test cluster: vanilla (migrated by a
superuser), Supabase-like (migrated by a non-superuser owner under Supabase's
default privileges) and plain (an owner with no extra role attributes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from tests.cli_runner import cli
from tests.pg import as_role, connect, new_registration

API_ROLES = ("anon", "authenticated", "service_role")

# SECURITY DEFINER functions anon or authenticated may call through
# /rest/v1/rpc. None: the tick is for pg_cron and the backend, the others are
# trigger functions.
INTENDED_DEFINER_RPC: set[str] = set()

ANA, BEN, CAL = "+15551110001", "+15551110002", "+15551110003"
ADMIN = {"sub": "staff-1", "role": "authenticated", "app_metadata": {"role": "admin"}}
SERVICE = {"role": "service_role"}


def customer(phone: str) -> dict[str, Any]:
    return {"sub": f"user-{phone[-4:]}", "role": "authenticated", "phone": phone.lstrip("+")}


@pytest.fixture(params=["vanilla", "supabase", "plain"])
def any_database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "vanilla":
        return request.getfixturevalue("pg_cluster").url
    return request.getfixturevalue(f"{request.param}_database_url")


@pytest.fixture()
def database_url(each_database_url: str) -> str:
    return each_database_url


@contextmanager
def committed_as(url: str, role: str, claims: dict[str, Any] | None = None
                 ) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """Like as_role, but the transaction commits: for what triggers record."""
    with connect(url, autocommit=False) as c:
        c.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims or {}),))
        c.execute(f"SET LOCAL ROLE {role}")
        yield c
        c.commit()


# ── Security Advisor ─────────────────────────────────────────────────────────


def test_security_advisor_finds_nothing(any_database_url):
    with connect(any_database_url) as c:
        no_rls = [r["relname"] for r in c.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            "AND relkind IN ('r', 'p') AND NOT relrowsecurity")]
        assert no_rls == [], "rls_disabled_in_public"

        reachable = {r["fn"] for r in c.execute(
            "SELECT p.oid::regprocedure::text AS fn FROM pg_proc p "
            "WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef "
            "AND (has_function_privilege('anon', p.oid, 'EXECUTE') "
            "     OR has_function_privilege('authenticated', p.oid, 'EXECUTE'))")}
        assert reachable <= INTENDED_DEFINER_RPC, "security_definer_function_executable"

        unpinned = [r["fn"] for r in c.execute(
            "SELECT p.oid::regprocedure::text AS fn FROM pg_proc p "
            "WHERE p.pronamespace = 'public'::regnamespace AND NOT EXISTS ("
            "  SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) s "
            "  WHERE s LIKE 'search_path=%')")]
        assert unpinned == [], "function_search_path_mutable"

        in_public = [r["extname"] for r in c.execute(
            "SELECT extname FROM pg_extension "
            "WHERE extnamespace = 'public'::regnamespace")]
        assert in_public == [], "extension_in_public"

        for role in ("anon", "authenticated"):
            truncatable = [r["relname"] for r in c.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                "AND relkind IN ('r', 'p') AND has_table_privilege(%s, oid, 'TRUNCATE')",
                (role,))]
            assert truncatable == [], f"{role} may TRUNCATE"
            for priv in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
                assert not c.execute(
                    "SELECT has_table_privilege(%s, 'public.registration_stages', %s) AS ok",
                    (role, priv)).fetchone()["ok"], f"{role} may {priv} registration_stages"


def test_one_permissive_policy_per_role_and_action(any_database_url):
    # Supabase's multiple_permissive_policies: ALL counts for every action,
    # PUBLIC for every role.
    with connect(any_database_url) as c:
        rows = c.execute(
            "SELECT tablename, policyname, roles, cmd FROM pg_policies "
            "WHERE schemaname = 'public' AND permissive = 'PERMISSIVE'").fetchall()
    seen: dict[tuple[str, str, str], list[str]] = {}
    for r in rows:
        roles = API_ROLES if "public" in r["roles"] else r["roles"]
        cmds = ("SELECT", "INSERT", "UPDATE", "DELETE") if r["cmd"] == "ALL" else (r["cmd"],)
        for role in roles:
            for cmd in cmds:
                seen.setdefault((r["tablename"], role, cmd), []).append(r["policyname"])
    assert {k: v for k, v in seen.items() if len(v) > 1} == {}


def test_the_ledger_is_out_of_the_apis_reach(any_database_url):
    with connect(any_database_url) as c:
        assert c.execute("SELECT to_regclass('public.regnotify_migrations') AS t"
                         ).fetchone()["t"] is None
        assert c.execute("SELECT count(*) AS n FROM regnotify.migrations").fetchone()["n"] > 0
        for role in API_ROLES:
            row = c.execute(
                "SELECT has_schema_privilege(%(r)s, 'regnotify', 'USAGE') AS usage, "
                "has_table_privilege(%(r)s, 'regnotify.migrations', "
                "'SELECT,INSERT,UPDATE,DELETE,TRUNCATE') AS any_priv", {"r": role}).fetchone()
            assert row == {"usage": False, "any_priv": False}, role
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(
        any_database_url, "anon"
    ) as c:
        c.execute("UPDATE regnotify.migrations SET checksum = 'x'")


# Exactly what each role holds on each table of 01-07, 12 and 13 (table level;
# 13's column grants on sms_opt_outs and notification_config are checked below).
TABLE_GRANTS = {
    "anon": {"registration_stages": "SELECT"},
    "authenticated": {
        "registration_stages": "SELECT",
        "registrations": "DELETE INSERT SELECT",
        "registration_notifications": "SELECT",
        "notification_queue": "DELETE INSERT SELECT UPDATE",
        "notification_pref_changes": "SELECT",
    },
    "service_role": {
        "registration_stages": "SELECT",
        "registrations": "DELETE INSERT SELECT UPDATE",
        "registration_notifications": "DELETE INSERT SELECT UPDATE",
        "notification_queue": "DELETE INSERT SELECT UPDATE",
        "notification_config": "SELECT UPDATE",
        "sms_opt_outs": "DELETE INSERT SELECT UPDATE",
        "webhook_events": "DELETE INSERT SELECT UPDATE",
        "notification_pref_changes": "SELECT",
    },
}
OUR_TABLES = ("registration_stages", "registrations", "registration_notifications",
              "notification_queue", "notification_config", "sms_opt_outs", "webhook_events",
              "notification_pref_changes")
PRIVS = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def test_each_role_holds_exactly_the_intended_table_privileges(any_database_url):
    with connect(any_database_url) as c:
        for role in API_ROLES:
            got = {}
            for table in OUR_TABLES:
                held = [p for p in PRIVS if c.execute(
                    "SELECT has_table_privilege(%s, %s, %s) AS ok",
                    (role, f"public.{table}", p)).fetchone()["ok"]]
                if held:
                    got[table] = " ".join(sorted(held))
            assert got == TABLE_GRANTS[role], role
            for seq in ("registration_notifications_id_seq", "notification_queue_id_seq",
                        "notification_pref_changes_id_seq"):
                assert not c.execute(
                    "SELECT has_sequence_privilege(%s, %s, 'USAGE,SELECT,UPDATE') AS ok",
                    (role, f"public.{seq}")).fetchone()["ok"], (role, seq)
        # 13: staff read whether a number opted out and the quiet hours (never
        # the relay's URL or token, nor how a number opted out).
        for table, column, ok in (
            ("sms_opt_outs", "phone", True), ("sms_opt_outs", "opted_out", True),
            ("sms_opt_outs", "source", False),
            ("notification_config", "quiet_hours_start", True),
            ("notification_config", "relay_token", False),
            ("notification_config", "relay_url", False),
        ):
            assert c.execute(
                "SELECT has_column_privilege('authenticated', %s, %s, 'SELECT') AS ok",
                (f"public.{table}", column)).fetchone()["ok"] is ok, (table, column)
            assert not c.execute(
                "SELECT has_column_privilege('anon', %s, %s, 'SELECT') AS ok",
                (f"public.{table}", column)).fetchone()["ok"], (table, column)
        # The column grant: authenticated writes what staff edit, never the keys.
        for column, ok in (("notification_pref", True), ("current_stage", True),
                           ("id", False), ("created_at", False)):
            assert c.execute(
                "SELECT has_column_privilege('authenticated', 'public.registrations', %s, "
                "'UPDATE') AS ok", (column,)).fetchone()["ok"] is ok, column


# ── A customer's own preference ──────────────────────────────────────────────


@pytest.fixture()
def ana_and_ben(conn) -> dict[str, str]:
    return {
        "ana": new_registration(conn, customer_phone=ANA, customer_email="ana@example.com"),
        "ben": new_registration(conn, customer_phone=BEN, customer_email="ben@example.com"),
    }


@pytest.mark.parametrize("pref", ["sms", "email", "both", "none"])
def test_customer_sets_their_own_preference(database_url, conn, ana_and_ben, pref):
    conn.execute("UPDATE registrations SET notification_pref = 'sms' WHERE id = %s",
                 (ana_and_ben["ana"],))
    conn.execute("TRUNCATE notification_pref_changes")
    with committed_as(database_url, "authenticated", customer(ANA)) as c:
        n = c.execute("UPDATE registrations SET notification_pref = %s WHERE id = %s",
                      (pref, ana_and_ben["ana"])).rowcount
    assert n == 1
    assert conn.execute("SELECT notification_pref AS p FROM registrations WHERE id = %s",
                        (ana_and_ben["ana"],)).fetchone()["p"] == pref
    changes = conn.execute("SELECT old_pref, new_pref, changed_by_kind, changed_by "
                           "FROM notification_pref_changes").fetchall()
    if pref == "sms":
        assert changes == []  # no change, nothing recorded
    else:
        assert changes == [{"old_pref": "sms", "new_pref": pref, "changed_by_kind": "customer",
                            "changed_by": customer(ANA)["sub"]}]


def test_customer_cannot_set_a_bad_value(database_url, ana_and_ben):
    with pytest.raises(psycopg.errors.CheckViolation), as_role(
        database_url, "authenticated", customer(ANA)
    ) as c:
        c.execute("UPDATE registrations SET notification_pref = 'pigeon' WHERE id = %s",
                  (ana_and_ben["ana"],))


@pytest.mark.parametrize("assignment", [
    "customer_phone = '+15550009999'", "customer_email = 'me@example.com'",
    "customer_name = 'Someone'", "current_stage = 'sticker_delivered'",
    "pending_notify_customer = false", "updated_at = now() - interval '1 day'",
    "id = gen_random_uuid()", "created_at = now()",
])
def test_customer_cannot_touch_another_column(database_url, ana_and_ben, assignment):
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(
        database_url, "authenticated", customer(ANA)
    ) as c:
        c.execute(f"UPDATE registrations SET notification_pref = 'email', {assignment} "
                  "WHERE id = %s", (ana_and_ben["ana"],))


def test_customer_cannot_touch_anyone_elses_row(database_url, conn, ana_and_ben):
    with committed_as(database_url, "authenticated", customer(ANA)) as c:
        assert c.execute("UPDATE registrations SET notification_pref = 'none' WHERE id = %s",
                         (ana_and_ben["ben"],)).rowcount == 0
        assert c.execute("UPDATE registrations SET notification_pref = 'none' "
                         "WHERE id <> %s", (ana_and_ben["ana"],)).rowcount == 0
    assert conn.execute("SELECT notification_pref AS p FROM registrations WHERE id = %s",
                        (ana_and_ben["ben"],)).fetchone()["p"] == "both"
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(database_url, "anon") as c:
        c.execute("UPDATE registrations SET notification_pref = 'none'")


def test_audit_names_staff_backend_and_direct_changes(database_url, conn, ana_and_ben):
    ana = ana_and_ben["ana"]
    with committed_as(database_url, "authenticated", ADMIN) as c:
        c.execute("UPDATE registrations SET notification_pref = 'email' WHERE id = %s", (ana,))
    with committed_as(database_url, "service_role", SERVICE) as c:
        c.execute("UPDATE registrations SET notification_pref = 'sms' WHERE id = %s", (ana,))
    conn.execute("UPDATE registrations SET notification_pref = 'none' WHERE id = %s", (ana,))
    rows = conn.execute("SELECT old_pref, new_pref, changed_by_kind, changed_by "
                        "FROM notification_pref_changes ORDER BY id").fetchall()
    assert [(r["old_pref"], r["new_pref"], r["changed_by_kind"], r["changed_by"])
            for r in rows] == [
        ("both", "email", "staff", "staff-1"),
        ("email", "sms", "service", "service_role"),
        ("sms", "none", "database", "postgres"),
    ]


def test_timeline_shows_who_changed_the_preference(database_url, conn, ana_and_ben, capsys):
    from tests.conftest import reset_process_state

    ana = ana_and_ben["ana"]
    with committed_as(database_url, "authenticated", customer(ANA)) as c:
        c.execute("UPDATE registrations SET notification_pref = 'email' WHERE id = %s", (ana,))
    try:
        code, out, err = cli(capsys, "status", ana, "--database-url", database_url)
        assert code == 0, err
        assert "Preference changes:" in out
        assert f"both -> email  by the customer ({customer(ANA)['sub']})" in out
        code, out, err = cli(capsys, "status", ana, "--database-url", database_url, "--json")
        assert code == 0, err
        changes = json.loads(out)["preference_changes"]
        assert [(c["old_pref"], c["new_pref"], c["changed_by_kind"]) for c in changes] == [
            ("both", "email", "customer")]
    finally:
        reset_process_state()


# ── Privacy after a phone change ─────────────────────────────────────────────


def _seen(url: str, phone: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with as_role(url, "authenticated", customer(phone)) as c:
        regs = c.execute("SELECT * FROM registrations").fetchall()
        notes = c.execute("SELECT * FROM registration_notifications").fetchall()
    return regs, notes


def test_after_a_phone_change_neither_number_sees_the_others_contact(
    database_url, conn, ana_and_ben
):
    # Ana's car; staff then find the phone belongs to Cal and correct it.
    reg = ana_and_ben["ana"]
    for channel, recipient in (("sms", ANA), ("email", "ana@example.com")):
        conn.execute("INSERT INTO registration_notifications (registration_id, channel, "
                     "recipient, status) VALUES (%s, %s, %s, 'sent')", (reg, channel, recipient))
    cal_other = new_registration(conn, customer_phone=CAL, customer_email="cal@example.com")
    conn.execute("INSERT INTO registration_notifications (registration_id, channel, recipient, "
                 "status) VALUES (%s, 'sms', %s, 'delivered')", (cal_other, CAL))
    conn.execute("UPDATE registrations SET customer_phone = %s, customer_email = %s "
                 "WHERE id = %s", (CAL, "cal@example.com", reg))
    conn.execute("INSERT INTO registration_notifications (registration_id, channel, recipient, "
                 "status) VALUES (%s, 'sms', %s, 'sent'), (%s, 'email', NULL, 'skipped')",
                 (reg, CAL, reg))

    regs, notes = _seen(database_url, CAL)
    assert {str(r["id"]) for r in regs} == {reg, cal_other}
    assert sorted((str(n["registration_id"]), n["channel"], n["recipient"]) for n in notes) == \
        sorted([(reg, "sms", CAL), (reg, "email", None), (cal_other, "sms", CAL)])
    text = json.dumps([regs, notes], default=str)
    assert ANA not in text and ANA.lstrip("+") not in text and "ana@example.com" not in text

    regs, notes = _seen(database_url, ANA)
    assert regs == [] and notes == []

    # An admin still sees the whole history.
    with as_role(database_url, "authenticated", ADMIN) as c:
        recipients = {r["recipient"] for r in c.execute(
            "SELECT recipient FROM registration_notifications WHERE registration_id = %s",
            (reg,))}
    assert recipients == {ANA, "ana@example.com", CAL, None}


def test_email_recipient_matches_whatever_its_case(database_url, conn, ana_and_ben):
    reg = ana_and_ben["ana"]
    conn.execute("INSERT INTO registration_notifications (registration_id, channel, recipient, "
                 "status) VALUES (%s, 'email', 'Ana@Example.com', 'sent')", (reg,))
    _, notes = _seen(database_url, ANA)
    assert [n["recipient"] for n in notes] == ["Ana@Example.com"]
