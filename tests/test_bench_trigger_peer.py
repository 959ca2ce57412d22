"""bench/trigger.py: the bench-only peers install and fire as described; ratios pair rounds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench import trigger, trigger_peers
from tests.pg import new_registration

ROOT = Path(__file__).resolve().parents[1]

# What each peer is: who fires it, whether its function pins search_path,
# whether its row keeps our extras (change_count, updated_at on the row), and
# whether it consumes pending_notify_customer.
PEERS = {
    # The bare upsert: no pin, fired by every UPDATE, the stage tested in the body.
    "seed": {"of_stage": False, "when": False, "pinned": False, "ours": False, "consumes": True},
    # The seed plan's: fixed search_path, fired only when current_stage changes.
    "seed_plan": {"of_stage": True, "when": True, "pinned": True, "ours": False,
                  "consumes": True},
    # Ours as the migrations compiled it, minus the pin.
    "trigger_unpinned": {"of_stage": True, "when": False, "pinned": False, "ours": True,
                         "consumes": True},
    # A bound, not a trigger: the seed's upsert pinned, NEW left untouched.
    "pinned_floor": {"of_stage": False, "when": False, "pinned": True, "ours": False,
                     "consumes": False},
}


def _only(conn: psycopg.Connection, variant: str) -> None:
    for name in filter(None, trigger.CPU_VARIANTS.values()):
        state = "ENABLE" if trigger.CPU_VARIANTS[variant] == name else "DISABLE"
        conn.execute(f"ALTER TABLE registrations {state} TRIGGER {name}")


def _queue(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT old_stage, new_stage, change_count, notify_customer, sent,"
        " send_after - now() AS lag FROM notification_queue").fetchall()


@pytest.mark.parametrize("variant", list(PEERS))
def test_each_peer_fires_on_stage_changes_only_and_upserts_one_row(conn, variant):
    shape = PEERS[variant]
    name = trigger.CPU_VARIANTS[variant]
    trigger_peers.install_peers(conn)
    try:
        # Installed disabled: the migrations' trigger alone stays on.
        enabled = conn.execute(
            "SELECT tgname, tgenabled FROM pg_trigger WHERE tgname LIKE 'trg_bench_%%'"
        ).fetchall()
        assert {r["tgname"]: r["tgenabled"] for r in enabled} == {
            n: "D" for n in (trigger_peers.SEED_TRIGGER, trigger_peers.SEED_PLAN_TRIGGER,
                             trigger_peers.UNPINNED_TRIGGER, trigger_peers.PINNED_FLOOR_TRIGGER)}

        found = conn.execute(
            "SELECT pg_get_triggerdef(t.oid) AS def, p.prosecdef, p.proconfig, p.prosrc"
            " FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid WHERE t.tgname = %s",
            (name,)).fetchone()
        assert found["prosecdef"] is True
        assert ("UPDATE OF current_stage ON" in found["def"]) is shape["of_stage"]
        assert ("WHEN" in found["def"]) is shape["when"]
        assert found["proconfig"] == (['search_path=""'] if shape["pinned"] else None)
        if variant == "trigger_unpinned":
            ours = conn.execute(
                "SELECT pg_get_triggerdef(t.oid) AS def, p.prosrc, p.proconfig FROM pg_trigger t"
                " JOIN pg_proc p ON p.oid = t.tgfoid WHERE t.tgname = %s",
                (trigger.TRIGGER,)).fetchone()
            # The same body and the same firing, the pin alone taken out.
            assert found["prosrc"] == ours["prosrc"]
            assert ours["proconfig"] == ['search_path=""']
            assert found["def"].split(" BEFORE ")[1].split(" EXECUTE ")[0] == \
                ours["def"].split(" BEFORE ")[1].split(" EXECUTE ")[0]

        if variant == "pinned_floor":
            seed = conn.execute("SELECT prosrc FROM pg_proc"
                                " WHERE proname = 'bench_seed_queue_status_notification'"
                                ).fetchone()["prosrc"]
            # The seed's body, its one write to NEW taken out (and its table
            # named in full, as an empty search_path needs).
            assert found["prosrc"] == seed.replace(
                "INSERT INTO notification_queue", "INSERT INTO public.notification_queue"
            ).replace("        NEW.pending_notify_customer := NULL;\n", "")

        _only(conn, variant)
        reg = new_registration(conn)
        # Neither an UPDATE of another column nor one leaving the stage as it
        # was queues anything or consumes the pending flag.
        conn.execute("UPDATE registrations SET plate_number = 'ABC123',"
                     " pending_notify_customer = false WHERE id = %s", (reg,))
        conn.execute("UPDATE registrations SET current_stage = 'sale_complete' WHERE id = %s",
                     (reg,))
        assert _queue(conn) == []
        flag = conn.execute("SELECT pending_notify_customer AS f FROM registrations"
                            " WHERE id = %s", (reg,)).fetchone()["f"]
        assert flag is False

        for stage in ("documents_collected", "submitted_to_dmv"):
            conn.execute("UPDATE registrations SET current_stage = %s WHERE id = %s",
                         (stage, reg))
        rows = _queue(conn)
        # One pending row: the burst's first old_stage, the newest new_stage,
        # the flag captured on the first change (coalesce(NULL, true) after it
        # was consumed; the floor never consumes it, so it stays false).
        assert len(rows) == 1
        row = rows[0]
        assert (row["old_stage"], row["new_stage"], row["sent"]) == (
            "sale_complete", "submitted_to_dmv", False)
        assert row["notify_customer"] is shape["consumes"]
        # The seeds count nothing; ours counts the second change.
        assert row["change_count"] == (2 if shape["ours"] else 1)
        assert 290 < row["lag"].total_seconds() <= 300
        flag = conn.execute("SELECT pending_notify_customer AS f FROM registrations"
                            " WHERE id = %s", (reg,)).fetchone()["f"]
        assert flag is (None if shape["consumes"] else False)

        conn.execute("UPDATE registrations SET current_stage = 'dmv_processing',"
                     " pending_notify_customer = false WHERE id = %s", (reg,))
        assert _queue(conn)[0]["notify_customer"] is False
    finally:
        trigger_peers.drop_peers(conn)
        conn.execute(f"ALTER TABLE registrations ENABLE TRIGGER {trigger.TRIGGER}")
    left = conn.execute("SELECT count(*) AS n FROM pg_proc WHERE proname LIKE 'bench\\_%%'"
                        ).fetchone()
    assert left["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM pg_trigger WHERE tgname LIKE 'trg_bench_%%'"
                        ).fetchone()["n"] == 0


def test_ratios_are_medians_of_paired_rounds():
    figures = trigger.TriggerFigures(rows=10, seconds_per_run=1, clients=1, tps={
        "async_plain": [100.0, 200.0, 100.0],
        "async_seed": [50.0, 100.0, 80.0],
        "async_seed_plan": [40.0, 100.0, 100.0],
        "async_trigger": [60.0, 90.0, 80.0],
        "durable_plain": [10.0, 10.0, 10.0],
        "durable_seed": [5.0, 8.0, 4.0],
        "durable_seed_plan": [5.0, 5.0, 5.0],
        "durable_trigger": [5.0, 4.0, 4.0],
    })
    summary = trigger.summary(figures)
    # Per round 60/50, 90/100, 80/80 -> median 1.0; ours vs none 0.6, 0.45, 0.8 -> 0.6.
    assert summary["trigger_vs_seed_ratio"] == pytest.approx(1.0)
    assert summary["trigger_overhead_ratio"] == pytest.approx(0.6)
    assert summary["trigger_vs_seed_ratio_durable"] == pytest.approx(1.0)
    assert summary["trigger_overhead_ratio_durable"] == pytest.approx(0.4)
    # 60/40, 90/100, 80/100 -> 0.9; durable 1.0, 0.8, 0.8 -> 0.8.
    assert summary["trigger_vs_seed_plan_ratio"] == pytest.approx(0.9)
    assert summary["trigger_vs_seed_plan_ratio_durable"] == pytest.approx(0.8)


def test_pin_cost_is_the_median_of_per_round_differences():
    cpu = {"trigger": [40.0, 38.0, 50.0], "trigger_unpinned": [38.0, 37.5, 45.0]}
    assert trigger.pin_cost_us(cpu) == pytest.approx(2.0)
    assert trigger.pin_cost_us({}) is None


def test_floor_gap_is_the_median_of_per_round_differences():
    cpu = {"pinned_floor": [40.0, 39.0, 44.0], "seed": [39.0, 39.5, 41.0]}
    assert trigger.floor_gap_us(cpu) == pytest.approx(1.0)
    assert trigger.floor_gap_us({"seed": [1.0]}) is None


def test_every_variant_leads_a_round_in_turn():
    for variants in (trigger.VARIANTS, trigger.CPU_VARIANTS):
        orders = trigger._orders(variants)
        firsts = [next(orders)[0] for _ in range(len(variants))]
        assert sorted(firsts) == sorted(variants)


def test_python_m_bench_trigger_runs_every_variant_and_ends_with_the_ratios():
    done = subprocess.run(
        [sys.executable, "-m", "bench.trigger", "--rows", "500", "--rounds", "1",
         "--seconds", "1", "--clients", "1", "--cpu-updates", "50"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    print(done.stdout)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    assert set(json.loads(lines[-1])) == {
        f"trigger_{name}{mode}" for name in ("overhead_ratio", "vs_seed_ratio",
                                             "vs_seed_plan_ratio")
        for mode in ("", "_durable")}
    # A CPU line per variant, the unpinned copy included, unless /proc is closed to us.
    cpu = {line.split()[1] for line in lines if line.startswith("cpu ")}
    assert cpu in (set(), {*trigger.CPU_VARIANTS, "pinned"})
