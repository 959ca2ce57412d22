"""Migration 08: the settings compiled into queue_status_notification(), kept current."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from tests.pg import new_registration


def window_of_next_change(conn: psycopg.Connection) -> timedelta:
    reg = new_registration(conn)
    conn.execute("UPDATE registrations SET current_stage = 'documents_collected' WHERE id = %s",
                 (reg,))
    return conn.execute(
        "SELECT send_after - now() AS d FROM notification_queue WHERE registration_id = %s",
        (reg,)).fetchone()["d"]


def test_function_keeps_definer_rights_and_a_pinned_search_path(conn):
    fn = conn.execute(
        "SELECT prosecdef, proconfig FROM pg_proc"
        " WHERE oid = 'public.queue_status_notification()'::regprocedure").fetchone()
    assert fn["prosecdef"] is True
    assert fn["proconfig"] == ['search_path=""']


def test_settings_change_as_service_role_recompiles_the_trigger(conn):
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL ROLE service_role")
        conn.execute("UPDATE notification_config SET debounce_window = '3 minutes'")
        conn.execute("RESET ROLE")
        lag = window_of_next_change(conn)
        assert timedelta(minutes=2, seconds=55) < lag <= timedelta(minutes=3)
    # Rolled back with the transaction: the function is the 5-minute one again.
    lag = window_of_next_change(conn)
    assert timedelta(minutes=4, seconds=55) < lag <= timedelta(minutes=5)


def test_config_row_gone_means_the_defaults(conn):
    with conn.transaction(force_rollback=True):
        conn.execute("UPDATE notification_config SET debounce_window = '1 minute'")
        conn.execute("TRUNCATE notification_config")
        lag = window_of_next_change(conn)
        assert timedelta(minutes=4, seconds=55) < lag <= timedelta(minutes=5)
        conn.execute("INSERT INTO notification_config (id, debounce_window)"
                     " VALUES (true, '2 minutes')")
        lag = window_of_next_change(conn)
        assert timedelta(minutes=1, seconds=55) < lag <= timedelta(minutes=2)


def test_compile_functions_are_not_callable_through_the_api(conn):
    for role in ("anon", "authenticated", "service_role"):
        for fn in ("compile_queue_status_notification()", "notification_config_recompile()"):
            allowed = conn.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE') AS ok",
                                   (role, f"public.{fn}")).fetchone()["ok"]
            assert allowed is False, (role, fn)


def test_stage_rewritten_to_itself_queues_nothing_and_keeps_the_flag(conn):
    reg = new_registration(conn)
    conn.execute("UPDATE registrations SET current_stage = 'sale_complete',"
                 " pending_notify_customer = false WHERE id = %s", (reg,))
    assert conn.execute("SELECT count(*) AS n FROM notification_queue").fetchone()["n"] == 0
    flag = conn.execute("SELECT pending_notify_customer AS f FROM registrations WHERE id = %s",
                        (reg,)).fetchone()["f"]
    assert flag is False


def test_closed_reason_still_refuses_unknown_reasons(conn):
    reg = new_registration(conn)
    conn.execute("UPDATE registrations SET current_stage = 'documents_collected' WHERE id = %s",
                 (reg,))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE notification_queue SET sent = true, closed_reason = 'bogus'")
    conn.execute("UPDATE notification_queue SET sent = true, closed_reason = 'manual'")
    assert conn.execute("SELECT closed_reason FROM notification_queue").fetchone() == {
        "closed_reason": "manual"}
