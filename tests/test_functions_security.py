"""SECURITY DEFINER functions pin search_path, and the tick wakes the relay.

Runs on the vanilla and on the Supabase-like database, where default
privileges grant EXECUTE on every new function to anon, authenticated and
service_role until migration 12 takes it back.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.pg import as_role, connect

API_ROLES = ("anon", "authenticated", "service_role")

# Who may EXECUTE each function of the migrations (the owner always may).
# The trigger functions need no EXECUTE: PostgreSQL checks it when the
# trigger is created, not when it fires.
EXECUTE = {
    "notification_tick()": {"service_role"},
    "queue_status_notification()": set(),
    "registrations_customer_guard()": set(),
    "record_notification_pref_change()": set(),
    "jwt_customer_phone()": {"authenticated"},
    "jwt_is_admin()": {"authenticated"},
    # The front door (13): callable by signed-in callers and the backend, never
    # anon; both run as the caller (SECURITY INVOKER), so RLS decides.
    "request_notification(uuid,boolean)": {"authenticated", "service_role"},
    "notification_timeline(uuid)": {"authenticated", "service_role"},
    "timeline_caller_is_customer()": {"authenticated", "service_role"},
    "timeline_registration(uuid)": {"authenticated", "service_role"},
    "timeline_stage_changes(uuid)": {"authenticated", "service_role"},
    "timeline_messages(uuid)": {"authenticated", "service_role"},
    "timeline_holds(uuid)": {"authenticated", "service_role"},
    "timeline_fallbacks(uuid)": {"authenticated", "service_role"},
    "timeline_preference_changes(uuid)": {"authenticated", "service_role"},
}


@pytest.fixture()
def database_url(each_database_url: str) -> str:
    return each_database_url


def test_security_definer_functions_pin_search_path(conn):
    rows = conn.execute(
        "SELECT p.proname, p.proconfig FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public' AND p.prosecdef").fetchall()
    names = {r["proname"] for r in rows}
    assert {"queue_status_notification", "notification_tick"} <= names
    for r in rows:
        assert r["proconfig"] and any(c.startswith("search_path=") for c in r["proconfig"]), r


def test_definer_trigger_ignores_a_hostile_search_path(conn, clean_db):
    # A shadow table earlier on the caller's search_path must not capture the insert.
    conn.execute("CREATE SCHEMA IF NOT EXISTS evil")
    conn.execute("CREATE TABLE IF NOT EXISTS evil.notification_queue (LIKE "
                 "public.notification_queue)")
    try:
        from tests.pg import new_registration

        reg = new_registration(conn)
        with connect(clean_db) as c:
            c.execute("SET search_path = evil, public")
            c.execute("UPDATE public.registrations SET current_stage = 'documents_collected' "
                      "WHERE id = %s", (reg,))
        assert conn.execute("SELECT count(*) AS n FROM evil.notification_queue"
                            ).fetchone()["n"] == 0
        assert conn.execute("SELECT count(*) AS n FROM public.notification_queue"
                            ).fetchone()["n"] == 1
    finally:
        conn.execute("DROP SCHEMA evil CASCADE")


def test_tick_without_pg_net_sends_a_notify(conn, clean_db):
    with connect(clean_db) as listener:
        listener.execute("LISTEN notification_tick")
        how = conn.execute("SELECT notification_tick() AS how").fetchone()["how"]
        assert how == "notify"
        got = next(listener.notifies(timeout=5, stop_after=1), None)
    assert got is not None
    assert got.channel == "notification_tick"
    assert json.loads(got.payload)["source"] == "notification_tick"


def test_customers_cannot_call_the_tick(database_url, conn):
    rows = conn.execute(
        "SELECT has_function_privilege('anon', 'public.notification_tick()', 'EXECUTE') AS a, "
        "has_function_privilege('authenticated', 'public.notification_tick()', 'EXECUTE') AS b"
    ).fetchone()
    assert rows == {"a": False, "b": False}
    # What /rest/v1/rpc/notification_tick would run with the anon key.
    for role in ("anon", "authenticated"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(
            database_url, role
        ) as c:
            c.execute("SELECT public.notification_tick()")


@pytest.mark.parametrize("function", list(EXECUTE))
def test_execute_is_granted_only_where_meant(conn, function):
    got = {role for role in (*API_ROLES, "public")
           if conn.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE') AS ok",
                           (role, f"public.{function}")).fetchone()["ok"]}
    assert got == EXECUTE[function]


def test_every_function_pins_search_path(conn):
    rows = conn.execute(
        "SELECT p.oid::regprocedure::text AS fn, p.proconfig FROM pg_proc p "
        "WHERE p.pronamespace = 'public'::regnamespace").fetchall()
    assert rows
    unpinned = [r["fn"] for r in rows
                if not any(c.startswith("search_path=") for c in r["proconfig"] or [])]
    assert unpinned == []


def test_service_role_runs_the_tick(database_url, clean_db):
    with as_role(database_url, "service_role") as c:
        assert c.execute("SELECT public.notification_tick() AS how").fetchone()["how"] == "notify"


def test_cron_job_is_scheduled(pg_cluster, cron_enabled):
    # pg_cron serves one database of the cluster: the vanilla one.
    with connect(pg_cluster.url) as conn:
        job = conn.execute(
            "SELECT schedule, command, active FROM cron.job "
            "WHERE jobname = 'process-notification-queue'").fetchone()
    assert job is not None
    assert job["schedule"] == "* * * * *"
    assert "notification_tick()" in job["command"]
    assert job["active"] is True
