"""The `process_notification_queue` task: claim due rows, fan out sends, sweep lost ones.

Also the two ways to start it: `request_tick` (coalesced) and `arm_wakeup`
(one run at the next send_after); tasks/maintenance/wakeup.py decides, this module enqueues.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass

from celery import Task

from db import deliveries, replies
from db.queue import claim_due, seconds_until_next_due
from tasks.database import engine
from tasks.maintenance.wakeup import (
    TickRequest,
    claim_wakeup,
    run_started,
    should_enqueue_tick,
    tick_not_queued,
    tick_queued,
)
from tasks.relay import tick_publisher
from tasks.sending.bounds import lease_seconds
from tasks.sending.quiet_hours import release_held
from tasks.settings import get_settings
from tasks.worker.app import BROKER_HORIZON_S, app
from tasks.worker.dispatch import dispatch, dispatch_released, dispatch_reply_digests
from tasks.worker.retry_policy import INFRASTRUCTURE_RETRY
from tasks.worker.worker_metrics import record_queue_run

log = logging.getLogger(__name__)

#: A run hands over to a fresh one after this long, so one huge backlog
#: never pins a worker thread or outlives the broker's patience.
RUN_BUDGET_S = 20.0
SWEEP_LIMIT = 5000


@dataclass
class TickResult:
    """What one run did."""

    closed: int = 0
    dispatched: int = 0
    swept: int = 0
    #: Held for quiet hours, and now the window opened.
    released: int = 0
    #: Parked for a rate slot or a long backoff, and now within the broker's horizon.
    unparked: int = 0
    #: Customers' replies gathered into e-mails to staff, now due (or lost mid-send).
    reply_digests: int = 0
    batches: int = 0
    continued: bool = False
    wake_in_s: float | None = None


def drain_due() -> TickResult:
    """Claim and dispatch due rows batch by batch, then re-dispatch stale deliveries."""
    settings = get_settings()
    result = TickResult()
    started = time.monotonic()
    while True:
        with engine().begin() as conn:
            claimed = claim_due(conn, settings.claim_batch_size)
        # Committed: the rows exist before any worker can look for them.
        result.dispatched += dispatch(claimed.deliveries)
        result.closed += claimed.closed
        result.batches += 1
        if claimed.closed < settings.claim_batch_size:
            break
        if time.monotonic() - started > RUN_BUDGET_S:
            result.continued = True
            break
    # Quiet hours: deliveries whose window opened (tasks/sending/quiet_hours.py).
    result.released, more = release_held(settings.claim_batch_size, started + RUN_BUDGET_S)
    result.continued = result.continued or more
    with engine().begin() as conn:
        stale = deliveries.sweep_stale(
            conn, older_than_s=settings.sweep_after_s, limit=SWEEP_LIMIT
        )
    if stale:
        log.warning("sweep: re-dispatching %d deliveries whose tasks went missing", len(stale))
    result.swept = dispatch(stale)
    # Deliveries parked for a rate slot or a long backoff: publish the ones
    # whose time is within the broker's horizon, for that time.
    with engine().begin() as conn:
        released = deliveries.release_parked(
            conn, horizon_s=BROKER_HORIZON_S, limit=SWEEP_LIMIT
        )
    result.unparked = dispatch_released(released)
    result.reply_digests = _reply_digests(settings.claim_batch_size)
    with engine().begin() as conn:
        due = seconds_until_next_due(conn)
        parked = deliveries.seconds_until_next_parked(conn)
        digest = replies.seconds_until_next_digest(conn)
    if parked is not None:
        # Wake when the next parked one is half a horizon from its time.
        parked = max(parked - BROKER_HORIZON_S / 2, 0.05)
    if digest is not None:
        digest = max(digest, 0.05)
    times = [t for t in (due, parked, digest) if t is not None]
    result.wake_in_s = min(times) if times else None
    return result


def _reply_digests(limit: int) -> int:
    """Claim the reply digests whose debounce window closed and publish their send task."""
    settings = get_settings()
    lease_s = lease_seconds(settings)
    token = uuid.uuid4().hex
    with engine().begin() as conn:
        ids = replies.claim_digests(conn, limit=limit, lease_s=lease_s, token=token)
        # What the hourly cap held back: one summary e-mail, one task.
        summary = replies.claim_summary(conn, lease_s=lease_s, token=token)
    return dispatch_reply_digests(ids, token) + _publish_summary(summary, token)


def _publish_summary(digest_ids: list[int], token: str) -> int:
    """One task for the whole summary: it is one e-mail, so never split into batches."""
    if digest_ids:
        if "send_reply_digests" not in app.tasks:
            app.loader.import_default_modules()
        app.tasks["send_reply_digests"].apply_async(
            (digest_ids, token), argsrepr=f"(reply_summary={len(digest_ids)} digests)",
            add_to_parent=False)
    return len(digest_ids)


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
