"""`regnotify bench --smoke`: the benchmark runs end to end and prints its figures.

The figures are printed, not asserted against the goals: a smoke run is too
small, and a CI machine too noisy, for them to mean anything.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.runner import FIGURE_KEYS

ROOT = Path(__file__).resolve().parents[1]


def test_bench_smoke_prints_every_figure_as_the_last_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tasks.cli", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    print(done.stdout)
    assert done.returncode == 0, done.stderr[-4000:]
    last = done.stdout.strip().splitlines()[-1]
    figures = json.loads(last)
    assert list(figures) == list(FIGURE_KEYS)
    for key, value in figures.items():
        assert isinstance(value, int | float) and not isinstance(value, bool), key
        assert math.isfinite(value), key
    # The machine's CPU per send and bare Celery's per task, measured in the
    # same run: each part took some, and `stack` is their sum.
    for unit in ("drain_{}_cpu_ms_per_send", "bare_celery_{}_cpu_ms_per_task"):
        parts = [figures[unit.format(part)] for part in ("worker", "postgresql", "redis")]
        assert parts[0] > 0 and parts[2] > 0, unit
        assert figures[unit.format("stack")] == pytest.approx(sum(parts), abs=0.02)
    assert figures["drain_postgresql_cpu_ms_per_send"] > 0
    # E-mails go in batches: fewer provider requests than sends, never more.
    assert 0 < figures["latency_requests_bound_ratio"] < figures["latency_bound_ratio"]
    assert len(list(tmp_path.glob("bench-smoke-*.json"))) == 1
    assert len(list(tmp_path.glob("bench-smoke-*.png"))) == 1


def test_send_profile_reports_cpu_sql_and_redis_per_send() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.send_profile", "--notifications", "40", "--processes", "1",
         "--threads", "4"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    print(done.stdout)
    assert done.returncode == 0, done.stderr[-4000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["sends"] == 80
    assert figures["cpu_ms_per_send"]["worker"] > 0
    queries = " ".join(row["query"] for row in figures["statements"])
    # The send path's own statements, counted by pg_stat_statements.
    assert "Takes the lease" in queries and "The provider accepted" in queries
    assert "evalsha" in figures["redis_commands"]
