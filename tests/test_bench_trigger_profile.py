"""bench/trigger_profile.py: callgrind counts per stage UPDATE, read right and attributed right."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import trigger_profile
from bench.trigger_peers import CPU_VARIANTS

ROOT = Path(__file__).resolve().parents[1]

# A callgrind out file as valgrind writes it: names compressed to "(id)" after
# their first use, each call arc followed by its inclusive cost.
CALLGRIND = """\
version: 1
creator: callgrind-3.19.0
events: Ir
ob=(1) /usr/lib/postgresql/15/bin/postgres
fl=(1) ???
fn=(1) main
0 10
cfl=(1)
cfn=(2) ExecConstraints
calls=2 0
0 500
cob=(1)
cfn=(3) btinsert
calls=3 0
0 90
fn=(2)
0 500
fn=(4) exec_simple_query
0 5
cfn=(2)
calls=1 0
0 200
totals: 1234
"""


def test_parse_reads_the_total_and_sums_each_callee_over_its_call_arcs():
    got = trigger_profile.parse_callgrind(CALLGRIND)
    assert got.total == 1234
    assert got.calls["ExecConstraints"] == 3
    assert got.inclusive["ExecConstraints"] == 700
    assert (got.calls["btinsert"], got.inclusive["btinsert"]) == (3, 90)
    assert "main" not in got.calls


def test_parse_refuses_a_file_without_totals():
    with pytest.raises(trigger_profile.ProfileError):
        trigger_profile.parse_callgrind("events: Ir\nfn=(1) main\n0 3\n")


def test_per_update_is_the_difference_over_the_updates_between_the_runs():
    small = trigger_profile.Callgrind(1_000, {"btinsert": 10}, {"ExecConstraints": 100})
    large = trigger_profile.Callgrind(5_000, {"btinsert": 50}, {"ExecConstraints": 900})
    got = trigger_profile.per_update(small, large, 20)
    assert got["instructions"] == 200
    assert got["check_constraints"] == 40
    assert got["index_entries"] == 2


def test_modes_reach_the_insert_and_the_merge_paths():
    assert trigger_profile.update_ids("insert", 5) == [1, 2, 3, 4, 5]
    merge = trigger_profile.update_ids("merge", trigger_profile.MERGE_SET + 3)
    # After the first pass every registration already has its pending row.
    assert merge[trigger_profile.MERGE_SET:] == [1, 2, 3]
    script = trigger_profile.statements("seed", [7])
    assert "ENABLE TRIGGER trg_bench_seed_queue_status_notification;" in script
    assert script.count("ENABLE TRIGGER") == 1
    assert script.count("DISABLE TRIGGER") == len([v for v in CPU_VARIANTS.values() if v]) - 1
    assert "md5('bench' || (7)::text)::uuid" in script


def test_summary_compares_ours_with_the_seed_unpinned_and_the_floor():
    result = {"insert": {
        "plain": {"instructions": 500.0}, "seed": {"instructions": 660.0},
        "trigger": {"instructions": 675.0}, "trigger_unpinned": {"instructions": 664.0},
        "pinned_floor": {"instructions": 666.0}}}
    got = trigger_profile.summary(result)
    assert got["insert_trigger_minus_seed"] == 15
    assert got["insert_pin"] == 11
    assert got["insert_body_minus_seed"] == 4
    assert got["insert_pinned_floor_minus_seed"] == 6
    assert got["insert_trigger_vs_seed_instr_ratio"] == pytest.approx(660 / 675, abs=1e-4)


def test_profile_of_a_real_backend_prices_the_pin_and_counts_the_queue_index_entries():
    with trigger_profile.prepared_cluster(300, None) as prepared:
        result = trigger_profile.profile(
            prepared, variants=["plain", "trigger", "trigger_unpinned"], modes=["insert"],
            small=5, large=25)["insert"]
    plain, ours, unpinned = result["plain"], result["trigger"], result["trigger_unpinned"]
    # No trigger fires without one; ours costs instructions on top of the UPDATE.
    assert plain["trigger_call"] == 0
    assert ours["instructions"] > plain["instructions"]
    # The pin's GUC save and restore runs in the pinned function only...
    assert ours["pin_guc"] > 1_000
    assert unpinned["pin_guc"] < 100
    # ...and is the difference between two otherwise identical bodies.
    assert ours["instructions"] - unpinned["instructions"] > ours["pin_guc"]
    # Every stage change that opens a burst writes one entry into each of the
    # queue's four indexes: the key, uq_pending_notification, the due index
    # and the by-registration index.
    assert ours["index_entries"] - plain["index_entries"] == pytest.approx(4.0)
    assert ours["wal_records"] > plain["wal_records"]


def test_python_m_bench_trigger_profile_refuses_an_unknown_variant_in_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "bench.trigger_profile", "--variants", "seed,nope"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "unknown mode or variant nope" in done.stderr


def test_python_m_bench_trigger_profile_prints_a_table_per_mode_and_ends_with_json():
    done = subprocess.run(
        [sys.executable, "-m", "bench.trigger_profile", "--rows", "200", "--small", "3",
         "--large", "13", "--variants", "seed,trigger", "--modes", "merge"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    print(done.stdout)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("PostgreSQL ")
    assert any(line.startswith("mode merge:") for line in lines)
    assert [line.split()[0] for line in lines if line.startswith(("seed ", "trigger "))] == [
        "seed", "trigger"]
    figures = json.loads(lines[-1])
    assert {"merge_trigger_minus_seed", "merge_trigger_vs_seed_instr_ratio"} <= set(figures)
