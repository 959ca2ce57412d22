"""Scenario figures, appended to test-artifacts/reliability.jsonl for the issue note."""

from __future__ import annotations

import json
from pathlib import Path

from tests.reliability.ledger import Ledger

REPORT = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability.jsonl"


def record(scenario: str, ledger: Ledger, drain_after_recovery_s: float) -> None:
    """Append one scenario's row."""
    REPORT.parent.mkdir(exist_ok=True)
    row = {"scenario": scenario, **ledger.row(),
           "drain_after_recovery_s": round(drain_after_recovery_s, 1)}
    with REPORT.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row))
