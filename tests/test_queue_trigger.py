"""The debounce trigger: what a stage change writes to notification_queue."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import psycopg
import pytest

from tests.pg import connect, new_registration


def pending(conn: psycopg.Connection, reg_id: str) -> list[dict]:
    return conn.execute(
        "SELECT * FROM notification_queue WHERE registration_id = %s AND NOT sent", (reg_id,)
    ).fetchall()


def set_stage(conn: psycopg.Connection, reg_id: str, stage: str, **extra: object) -> None:
    sets = ", ".join(["current_stage = %(stage)s", *(f"{k} = %({k})s" for k in extra)])
    conn.execute(f"UPDATE registrations SET {sets} WHERE id = %(id)s",
                 {"stage": stage, "id": reg_id, **extra})


def test_burst_of_three_changes_is_one_pending_row(conn):
    reg = new_registration(conn)
    for stage in ("documents_collected", "submitted_to_dmv", "dmv_processing"):
        set_stage(conn, reg, stage)
    rows = pending(conn, reg)
    assert len(rows) == 1
    assert rows[0]["old_stage"] == "sale_complete"
    assert rows[0]["new_stage"] == "dmv_processing"
    assert rows[0]["change_count"] == 3
    assert rows[0]["notify_customer"] is True


def test_send_after_resets_on_each_change(conn):
    reg = new_registration(conn)
    set_stage(conn, reg, "documents_collected")
    first = pending(conn, reg)[0]["send_after"]
    time.sleep(0.05)
    set_stage(conn, reg, "submitted_to_dmv")
    second = pending(conn, reg)[0]
    assert second["send_after"] > first
    # now() + 5 minutes, measured from the server's clock
    lag = conn.execute("SELECT %s - now() AS d", (second["send_after"],)).fetchone()["d"]
    assert timedelta(minutes=4, seconds=55) < lag <= timedelta(minutes=5)


def test_send_after_is_capped_by_max_wait(conn):
    conn.execute("UPDATE notification_config SET debounce_window = '5 minutes', "
                 "max_wait = '10 minutes'")
    reg = new_registration(conn)
    set_stage(conn, reg, "documents_collected")
    # Pretend the burst began 8 minutes ago: another change may only push the
    # message to created_at + 10 minutes, not to now() + 5.
    conn.execute("UPDATE notification_queue SET created_at = now() - interval '8 minutes' "
                 "WHERE registration_id = %s", (reg,))
    set_stage(conn, reg, "submitted_to_dmv")
    row = pending(conn, reg)[0]
    lag = conn.execute("SELECT %s - now() AS d", (row["send_after"],)).fetchone()["d"]
    assert timedelta(minutes=1, seconds=55) < lag <= timedelta(minutes=2)


def test_debounce_window_is_configurable(conn):
    conn.execute("UPDATE notification_config SET debounce_window = '2 seconds'")
    reg = new_registration(conn)
    set_stage(conn, reg, "documents_collected")
    row = pending(conn, reg)[0]
    lag = conn.execute("SELECT %s - now() AS d", (row["send_after"],)).fetchone()["d"]
    assert timedelta(seconds=1) < lag <= timedelta(seconds=2)


def test_config_refuses_nonsense(conn):
    with pytest.raises(psycopg.errors.CheckViolation, match="max_wait_covers_window"):
        conn.execute("UPDATE notification_config SET debounce_window = '1 hour', "
                     "max_wait = '10 minutes'")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE notification_config SET debounce_window = '-1 minute'")


def test_update_without_stage_change_queues_nothing(conn):
    reg = new_registration(conn)
    conn.execute("UPDATE registrations SET customer_name = 'Dana D.' WHERE id = %s", (reg,))
    set_stage(conn, reg, "sale_complete")  # same stage as before
    assert pending(conn, reg) == []


def test_silence_is_captured_and_flag_cleared(conn):
    reg = new_registration(conn)
    set_stage(conn, reg, "documents_collected", pending_notify_customer=False)
    row = pending(conn, reg)[0]
    assert row["notify_customer"] is False
    flag = conn.execute("SELECT pending_notify_customer FROM registrations WHERE id = %s",
                        (reg,)).fetchone()["pending_notify_customer"]
    assert flag is None
    # The next change is not silenced unless staff say so again.
    set_stage(conn, reg, "submitted_to_dmv")
    assert pending(conn, reg)[0]["notify_customer"] is True


def test_burst_that_returns_to_start_is_visible_as_such(conn):
    reg = new_registration(conn)
    set_stage(conn, reg, "needs_attention")
    set_stage(conn, reg, "sale_complete")
    row = pending(conn, reg)[0]
    assert (row["old_stage"], row["new_stage"]) == ("sale_complete", "sale_complete")


def test_change_after_row_closed_starts_a_new_row(conn, clean_db):
    reg = new_registration(conn)
    set_stage(conn, reg, "documents_collected")
    # A claimer holds the pending row and is closing it when staff change the
    # stage again: the staff UPDATE waits, then must open a new pending row.
    with connect(clean_db, autocommit=False) as claimer:
        claimer.execute("SELECT id FROM notification_queue WHERE registration_id = %s "
                        "AND NOT sent FOR UPDATE", (reg,))
        claimer.execute("UPDATE notification_queue SET sent = true WHERE registration_id = %s",
                        (reg,))
        done = threading.Event()
        errors: list[BaseException] = []

        def staff() -> None:
            try:
                with connect(clean_db) as other:
                    set_stage(other, reg, "submitted_to_dmv")
            except BaseException as exc:  # surfaced below
                errors.append(exc)
            done.set()

        t = threading.Thread(target=staff)
        t.start()
        assert not done.wait(0.3), "the staff update should wait for the claimer"
        claimer.commit()
        t.join(10)
    assert errors == []
    rows = conn.execute("SELECT sent, old_stage, new_stage FROM notification_queue "
                        "WHERE registration_id = %s ORDER BY id", (reg,)).fetchall()
    assert rows == [
        {"sent": True, "old_stage": "sale_complete", "new_stage": "documents_collected"},
        {"sent": False, "old_stage": "documents_collected", "new_stage": "submitted_to_dmv"},
    ]


def test_concurrent_updates_keep_one_pending_row_each(conn, clean_db):
    regs = [new_registration(conn, customer_phone=f"+1555000{i:04d}") for i in range(20)]
    stages = [r["stage"] for r in conn.execute("SELECT stage FROM registration_stages")]
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with connect(clean_db) as c:
                for _ in range(150):
                    set_stage(c, rng.choice(regs), rng.choice(stages))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    counts = conn.execute(
        "SELECT registration_id, count(*) AS n FROM notification_queue WHERE NOT sent "
        "GROUP BY registration_id"
    ).fetchall()
    assert all(r["n"] == 1 for r in counts)
    # Each pending row ends on the registration's current stage.
    mismatched = conn.execute(
        "SELECT count(*) AS n FROM notification_queue q JOIN registrations r "
        "ON r.id = q.registration_id WHERE NOT q.sent AND q.new_stage <> r.current_stage"
    ).fetchone()["n"]
    assert mismatched == 0
