"""Claim job: turn due queue rows into deliveries and fan them out to send tasks."""

from __future__ import annotations

from db.queue import claim_due
from tasks.broker.dispatch import dispatch
from tasks.database import engine
from tasks.maintenance.job import RunBudget, TickResult


def claim_due_rows(run: RunBudget) -> TickResult:
    """Claim due queue rows `claim_batch_size` at a time until none is left or time is up."""
    batch = run.settings.claim_batch_size
    result = TickResult()
    while True:
        with engine().begin() as conn:
            claimed = claim_due(conn, batch)
        # Committed: the rows exist before any worker can look for them.
        result.dispatched += dispatch(claimed.deliveries)
        result.closed += claimed.closed
        result.batches += 1
        if claimed.closed < batch:
            return result
        if run.spent():
            result.continued = True
            return result
