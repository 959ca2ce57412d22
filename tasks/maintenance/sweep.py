"""Sweep job: dispatch again the deliveries whose send task went missing.

A delivery still moving (queued or sending, not held, no live lease, no retry
due later) that nobody touched for SWEEP_AFTER_S lost its broker message or its
worker; the sweep touches each one it returns, so it finds it again only a
window later (sql/queries/deliveries.sql, sweep_stale).
"""

from __future__ import annotations

import logging

from db import deliveries
from tasks.broker.dispatch import dispatch
from tasks.database import engine
from tasks.maintenance.job import RunBudget, TickResult

log = logging.getLogger(__name__)

#: At most this many per run: the next run takes the rest.
SWEEP_LIMIT = 5000


def sweep_lost_sends(run: RunBudget) -> TickResult:
    """Re-dispatch deliveries older than sweep_after_s whose tasks went missing."""
    with engine().begin() as conn:
        stale = deliveries.sweep_stale(
            conn, older_than_s=run.settings.sweep_after_s, limit=SWEEP_LIMIT
        )
    if stale:
        log.warning("sweep: re-dispatching %d deliveries whose tasks went missing", len(stale))
    return TickResult(swept=dispatch(stale))
