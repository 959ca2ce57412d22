"""Releasing deliveries held for quiet hours, from the queue run (tasks/worker/queue_tick.py).

Holding happens in the claim (sql/queries/queue.sql): a held delivery is a
`queued` row with hold_reason and held_until, never a broker message with an
hours-long ETA (RabbitMQ's consumer timeout and Redis's visibility timeout
would both redeliver or drop it).
"""

from __future__ import annotations

import logging
import time

from db.holds import release_due
from tasks.database import engine
from tasks.worker.dispatch import dispatch

log = logging.getLogger(__name__)


def release_held(batch: int, deadline: float) -> tuple[int, bool]:
    """Release and dispatch held deliveries whose window opened, `batch` at a time.

    Returns (dispatched, more): `more` when the run's time budget
    (`deadline`, time.monotonic()) ran out with a full batch behind it. The
    send tasks' rate limiter paces what a morning's backlog puts on the queues.
    """
    dispatched = 0
    while True:
        with engine().begin() as conn:
            refs = release_due(conn, batch)
        # Committed: a task finds its delivery released.
        dispatched += dispatch(refs)
        if len(refs) < batch:
            if dispatched:
                log.info("quiet hours over: released %d held deliveries", dispatched)
            return dispatched, False
        if time.monotonic() > deadline:
            return dispatched, True
