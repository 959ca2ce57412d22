"""Unpark job: publish parked deliveries whose time came within the broker's horizon.

A wait for a rate slot or a long backoff beyond BROKER_HORIZON_S parks the
delivery in the database instead of the broker (a countdown that long is an
unacked message past the visibility timeout); this job hands it back to a
send task, with a countdown to its reserved time.
"""

from __future__ import annotations

from db import deliveries
from tasks.broker.app import BROKER_HORIZON_S
from tasks.broker.dispatch import dispatch_released
from tasks.database import engine
from tasks.maintenance.job import RunBudget, TickResult

#: At most this many per run: the next run takes the rest.
UNPARK_LIMIT = 5000


def unpark_due(run: RunBudget) -> TickResult:
    """Publish the parked deliveries due within the horizon, for their times."""
    with engine().begin() as conn:
        released = deliveries.release_parked(
            conn, horizon_s=BROKER_HORIZON_S, limit=UNPARK_LIMIT
        )
    return TickResult(unparked=dispatch_released(released))
