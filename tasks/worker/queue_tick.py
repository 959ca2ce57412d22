"""The `process_notification_queue` task: one queue run, the maintenance jobs in order.

Each job is a module of tasks/maintenance/ (tasks/maintenance/job.py gives
their shape); this module only lists them and runs them. The ways to start a
run (`request_tick`, `arm_wakeup`) are tasks/broker/wakeup.py's.
"""

from __future__ import annotations

from dataclasses import asdict

from celery import Task

from tasks.broker.app import app
from tasks.broker.wakeup import arm_wakeup, run_started
from tasks.coordination.worker_metrics import record_queue_run
from tasks.maintenance import claim, digests, holds, next_due, sweep, unpark
from tasks.maintenance.job import Job, RunBudget, TickResult
from tasks.settings import get_settings
from tasks.worker import worker_budget  # noqa: F401  (connects the worker's pool sizing)
from tasks.worker.infrastructure_retry import INFRASTRUCTURE_RETRY

#: The jobs of one run, in order; a new job is one line here. Sends first
#: (claim, holds), then the repairs (sweep, unpark), then staff mail; the
#: next wake-up last, since it reads what the others left.
JOBS: tuple[Job, ...] = (
    claim.claim_due_rows,
    holds.release_holds,
    sweep.sweep_lost_sends,
    unpark.unpark_due,
    digests.claim_reply_digests,
    next_due.next_wakeup,
)


def drain_due() -> TickResult:
    """Run every job once, in order, within one time budget; their results added up."""
    run = RunBudget.start(get_settings())
    return sum((job(run) for job in JOBS), TickResult())


@app.task(name="process_notification_queue", bind=True, acks_late=True,
          **INFRASTRUCTURE_RETRY)
def process_notification_queue(self: Task, reason: str = "tick") -> dict[str, object]:
    """Turn due queue rows into deliveries and send tasks; idempotent.

    `reason` says what started the run (tick, wake-up, continue), for Flower.
    """
    run_started()
    record_queue_run(reason)
    result = drain_due()
    if result.continued:
        process_notification_queue.apply_async(kwargs={"reason": "continue"})
    elif result.wake_in_s is not None:
        armed = arm_wakeup(result.wake_in_s)
        result.wake_in_s = armed if armed is not None else result.wake_in_s
    return {"reason": reason, **asdict(result)}
