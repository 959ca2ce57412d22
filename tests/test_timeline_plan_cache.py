"""Migration 25: the timeline's functions in PL/pgSQL, same answers; its undo restores them.

On the vanilla, the Supabase-like and the plain-owner databases. Each test
leaves the database as migrated (25 applied).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from db.sql_files import migrations_dir
from tests.pg import connect, new_registration

UP = migrations_dir() / "25_timeline_plan_cache.sql"
DOWN = migrations_dir() / "down" / "25_timeline_plan_cache.down.sql"
# Written in PL/pgSQL before 25 (21: it tests the backend role in an IF of its
# own); 25 leaves it as it is, and so does its undo.
ALREADY_PLPGSQL = {"timeline_caller_is_customer"}
FUNCTIONS = ("notification_timeline", "timeline_caller_is_customer", "timeline_registration",
             "timeline_stage_changes", "timeline_messages", "timeline_holds",
             "timeline_fallbacks", "timeline_preference_changes", "timeline_replies")
SNAPSHOT = """
SELECT p.proname, l.lanname, pg_get_functiondef(p.oid) AS def, p.proacl::text AS acl,
       pg_get_userbyid(p.proowner) AS owner
FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY(%s)
ORDER BY p.proname
"""


@pytest.fixture(params=["vanilla", "supabase", "plain"])
def db_url(request: pytest.FixtureRequest) -> str:
    return {"vanilla": lambda: request.getfixturevalue("pg_cluster").url,
            "supabase": lambda: request.getfixturevalue("supabase_database_url"),
            "plain": lambda: request.getfixturevalue("plain_database_url")}[request.param]()


def snapshot(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return conn.execute(SNAPSHOT, (list(FUNCTIONS),)).fetchall()


def timeline_as(conn: psycopg.Connection, reg: str, claims: dict[str, Any]) -> Any:
    with conn.transaction():
        conn.execute("SELECT set_config('role', %s, true), "
                     "set_config('request.jwt.claims', %s, true)",
                     (claims["role"], json.dumps(claims)))
        return conn.execute("SELECT public.notification_timeline(%s::uuid) AS doc",
                            (reg,)).fetchone()["doc"]


def test_the_timeline_runs_in_plpgsql_and_the_undo_restores_the_sql_functions(db_url):
    with connect(db_url) as conn:
        applied = snapshot(conn)
        assert [r["proname"] for r in applied] == sorted(FUNCTIONS)
        assert {r["lanname"] for r in applied} == {"plpgsql"}
        assert all("SET search_path TO ''" in r["def"] for r in applied)
        reg = new_registration(conn, customer_phone="+15551230001")
        conn.execute("UPDATE registrations SET current_stage = 'documents_collected', "
                     "notification_pref = 'sms' WHERE id = %s", (reg,))
        conn.execute("INSERT INTO registration_notifications (registration_id, channel, "
                     "recipient, status) VALUES (%s, 'sms', '+15551230001', 'sent')", (reg,))
        callers = [{"role": "authenticated", "phone": "15551230001", "sub": "c"},
                   {"role": "authenticated", "phone": "15559990000", "sub": "other"},
                   {"role": "service_role", "sub": "backend"}]
        try:
            with_plans = [timeline_as(conn, reg, c) for c in callers]
            assert with_plans[0]["registration_id"] == reg and with_plans[1] is None
            assert {e["kind"] for e in with_plans[2]["events"]} >= {"stage_change", "message"}
            for _ in range(2):  # the undo runs twice
                conn.execute(DOWN.read_text())
            undone = snapshot(conn)
            assert {r["proname"] for r in undone if r["lanname"] != "sql"} == ALREADY_PLPGSQL
            assert [timeline_as(conn, reg, c) for c in callers] == with_plans
            for _ in range(2):  # and the migration again, twice
                conn.execute(UP.read_text())
            again = snapshot(conn)
            # Byte for byte what the runner applied, with owner and grants.
            assert again == applied
            assert [timeline_as(conn, reg, c) for c in callers] == with_plans
        finally:
            conn.execute(UP.read_text())
            conn.execute("DELETE FROM registrations WHERE id = %s", (reg,))


def test_the_undo_gives_back_the_database_as_migrated_up_to_24(tmp_path: Path, pg_cluster):
    from db.install.migrations import migrate
    from tests.conftest import fresh_owned_database

    for path in sorted(migrations_dir().glob("*.sql")):
        if path.name < "25_":
            (tmp_path / path.name).write_text(path.read_text())
    url = fresh_owned_database(pg_cluster, "regnotify_plan_cache_undo", "postgres", "")
    migrate(url, tmp_path)
    with connect(url) as conn:
        before = snapshot(conn)
        assert {r["proname"] for r in before if r["lanname"] != "sql"} == ALREADY_PLPGSQL
        conn.execute(UP.read_text())
        assert {r["lanname"] for r in snapshot(conn)} == {"plpgsql"}
        conn.execute(DOWN.read_text())
        assert snapshot(conn) == before
