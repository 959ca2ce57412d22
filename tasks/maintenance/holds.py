"""Holds job: release deliveries held for quiet hours once their window opened.

Holding happens in the claim (sql/queries/queue.sql): a held delivery is a
`queued` row with hold_reason and held_until, never a broker message with an
hours-long ETA (RabbitMQ's consumer timeout and Redis's visibility timeout
would both redeliver or drop it).
"""

from __future__ import annotations

import logging

from db.holds import release_due
from tasks.broker.dispatch import dispatch
from tasks.database import engine
from tasks.maintenance.job import RunBudget, TickResult

log = logging.getLogger(__name__)


def release_holds(run: RunBudget) -> TickResult:
    """Release and dispatch held deliveries whose window opened, `claim_batch_size` at a time.

    Sets `continued` when the run's time ran out with a full batch behind it.
    The send tasks' rate limiter paces what a morning's backlog puts on the queues.
    """
    batch = run.settings.claim_batch_size
    result = TickResult()
    while True:
        with engine().begin() as conn:
            refs = release_due(conn, batch)
        # Committed: a task finds its delivery released.
        result.released += dispatch(refs)
        if len(refs) < batch:
            if result.released:
                log.info("quiet hours over: released %d held deliveries", result.released)
            return result
        if run.spent():
            result.continued = True
            return result
