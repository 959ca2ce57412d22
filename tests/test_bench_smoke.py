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
    assert len(list(tmp_path.glob("bench-smoke-*.json"))) == 1
    assert len(list(tmp_path.glob("bench-smoke-*.png"))) == 1
