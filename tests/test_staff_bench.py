"""bench/staff.py runs end to end at a tiny size (its figures are for people, not asserted)."""

from __future__ import annotations

import json

from bench import staff


def test_the_staff_bench_runs_and_reports_every_query(capsys):
    assert staff.main(["--registrations", "400", "--messages", "2000", "--replies", "50"]) == 0
    out = capsys.readouterr().out
    document = json.loads(out.strip().splitlines()[-1])
    names = {r["query"] for r in document["results"]}
    assert {"first page of messages", "search: phone (713) 555-…", "search: surname",
            "header: attention count"} <= names
    assert all(r["median_ms"] > 0 for r in document["results"])
