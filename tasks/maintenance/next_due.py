"""Next-due job, last in a run: how long until there is work again.

It reads what the jobs before it left: the next pending queue row or held
delivery, the next parked delivery, the next staff digest. The task arms one
wake-up run for that time (tasks/broker/wakeup.py decides whether one is
already armed), so a send_after minutes away needs no cron tick.
"""

from __future__ import annotations

from db import deliveries, replies
from db.queue import seconds_until_next_due
from tasks.broker.app import BROKER_HORIZON_S
from tasks.database import engine
from tasks.maintenance.job import RunBudget, TickResult

#: A floor on the wait: work another claimer holds must not spin runs in a tight loop.
MIN_WAKE_S = 0.05


def next_wakeup(run: RunBudget) -> TickResult:
    """The seconds until the earliest due work (wake_in_s), or None when nothing waits."""
    with engine().begin() as conn:
        due = seconds_until_next_due(conn)
        parked = deliveries.seconds_until_next_parked(conn)
        digest = replies.seconds_until_next_digest(conn)
    if parked is not None:
        # Wake when the next parked one is half a horizon from its time, so the
        # unpark job publishes it with room to spare.
        parked = max(parked - BROKER_HORIZON_S / 2, MIN_WAKE_S)
    if digest is not None:
        digest = max(digest, MIN_WAKE_S)
    times = [t for t in (due, parked, digest) if t is not None]
    return TickResult(wake_in_s=min(times) if times else None)
