"""The `process_notification_queue` task: one queue run, the maintenance jobs in order.

Each job is a module of tasks/maintenance/ (tasks/maintenance/job.py gives
their shape); this module only lists them and runs them. Also the two ways to
start a run: `request_tick` (coalesced) and `arm_wakeup` (one run at the next
send_after); tasks/maintenance/wakeup.py decides, this module enqueues.
"""

from __future__ import annotations

from dataclasses import asdict

from celery import Task

from tasks.coordination.worker_metrics import record_queue_run
from tasks.maintenance import claim, digests, holds, next_due, sweep, unpark
from tasks.maintenance.job import Job, RunBudget, TickResult
from tasks.maintenance.wakeup import (
    TickRequest,
    claim_wakeup,
    run_started,
    should_enqueue_tick,
    tick_not_queued,
    tick_queued,
)
from tasks.relay import tick_publisher
from tasks.settings import get_settings
from tasks.worker.app import app
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


def request_tick() -> TickRequest:
    """Enqueue process_notification_queue unless a run is already waiting to start.

    The publish is bounded (tasks/relay/tick_publisher.py): on a broker that went
    silent it raises within seconds instead of waiting forever.
    """
    if not should_enqueue_tick():
        return TickRequest(None, True)
    if app.conf.task_always_eager:
        result = process_notification_queue.apply_async()
        return TickRequest(result.id, False)
    try:
        result = tick_publisher.publisher.publish(
            lambda producer: process_notification_queue.apply_async(
                producer=producer, retry=True, retry_policy=tick_publisher.RETRY_POLICY))
    except Exception:
        # No run was queued: the marker must not coalesce the next ticks into
        # nothing until it expires.
        tick_not_queued()
        raise
    tick_queued()
    return TickRequest(result.id, False)


def arm_wakeup(seconds_until_due: float | None) -> float | None:
    """Schedule one run for when the next pending row is due; returns the countdown used."""
    countdown = claim_wakeup(seconds_until_due)
    if countdown is not None:
        process_notification_queue.apply_async(countdown=countdown, kwargs={"reason": "wake-up"})
    return countdown
