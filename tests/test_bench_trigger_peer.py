"""bench/trigger.py: the seed plan's trigger installs as a peer and the ratios pair rounds."""

from __future__ import annotations

import pytest

from bench import trigger
from tests.pg import new_registration


def test_seed_peer_upserts_with_a_fixed_window_and_drops_cleanly(conn):
    trigger.install_seed_peer(conn)
    try:
        conn.execute(f"ALTER TABLE registrations DISABLE TRIGGER {trigger.TRIGGER}")
        conn.execute(f"ALTER TABLE registrations ENABLE TRIGGER {trigger.SEED_TRIGGER}")
        reg = new_registration(conn)
        for stage in ("documents_collected", "submitted_to_dmv"):
            conn.execute("UPDATE registrations SET current_stage = %s,"
                         " pending_notify_customer = false WHERE id = %s", (stage, reg))
        row = conn.execute(
            "SELECT old_stage, new_stage, change_count, notify_customer,"
            " send_after - now() AS lag FROM notification_queue").fetchone()
        # One pending row, newest stage; the seed counts nothing and caps nothing.
        assert (row["old_stage"], row["new_stage"], row["change_count"]) == (
            "sale_complete", "submitted_to_dmv", 1)
        assert row["notify_customer"] is False
        assert 290 < row["lag"].total_seconds() <= 300
        flag = conn.execute("SELECT pending_notify_customer AS f FROM registrations"
                            " WHERE id = %s", (reg,)).fetchone()["f"]
        assert flag is None
    finally:
        trigger.drop_seed_peer(conn)
        conn.execute(f"ALTER TABLE registrations ENABLE TRIGGER {trigger.TRIGGER}")
    left = conn.execute("SELECT count(*) AS n FROM pg_proc"
                        " WHERE proname = 'bench_seed_queue_status_notification'").fetchone()
    assert left["n"] == 0


def test_ratios_are_medians_of_paired_rounds():
    figures = trigger.TriggerFigures(rows=10, seconds_per_run=1, clients=1, tps={
        "async_plain": [100.0, 200.0, 100.0],
        "async_seed": [50.0, 100.0, 80.0],
        "async_trigger": [60.0, 90.0, 80.0],
        "durable_plain": [10.0, 10.0, 10.0],
        "durable_seed": [5.0, 8.0, 4.0],
        "durable_trigger": [5.0, 4.0, 4.0],
    })
    summary = trigger.summary(figures)
    # Per round 60/50, 90/100, 80/80 -> median 1.0; ours vs none 0.6, 0.45, 0.8 -> 0.6.
    assert summary["trigger_vs_seed_ratio"] == pytest.approx(1.0)
    assert summary["trigger_overhead_ratio"] == pytest.approx(0.6)
    assert summary["trigger_vs_seed_ratio_durable"] == pytest.approx(1.0)
    assert summary["trigger_overhead_ratio_durable"] == pytest.approx(0.4)


def test_every_variant_leads_a_round_in_turn():
    orders = trigger._orders()
    firsts = [next(orders)[0] for _ in range(len(trigger.VARIANTS))]
    assert sorted(firsts) == sorted(trigger.VARIANTS)
