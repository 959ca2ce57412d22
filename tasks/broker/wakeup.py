"""When to start a queue run: coalesced ticks, and one wake-up at the next send_after.

`request_tick` (coalesced) and `arm_wakeup` (one run at the next send_after)
publish the run, by the task's registered name, so nothing here imports the
worker's task modules. Both keep a marker of the coordination
store (tasks.coordination.stores chooses it: Redis, else PostgreSQL), so
every worker shares them whatever the broker. They only save work: if the
keys are lost, the next tick or the cron safety net runs anyway.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from tasks.broker import tick_publisher
from tasks.broker.app import app
from tasks.broker.dispatch import registered_task
from tasks.coordination.store import StoreUnavailable
from tasks.coordination.stores import SharedStore

log = logging.getLogger(__name__)

PENDING_KEY = "regnotify:tick:pending"
WAKE_KEY = "regnotify:tick:wake_at"

#: A pending marker outlives a lost message by at most this long. Short,
#: because a marker can stand for nothing: a SET that timed out while the
#: coordination Redis's host was cut off still lands when the network heals
#: (TCP retransmits what the closed socket held, up to half a minute later),
#: after the run it was for. Ticks coalesced into such a marker queue nothing
#: until it expires; a run that really waits longer than this costs one spare run.
PENDING_TTL_S = 15
#: Wake-ups further out are re-armed by the run they start; a countdown is
#: an unacked message in Redis, so it must stay well under the visibility timeout.
MAX_WAKE_DELAY_S = 60.0


@dataclass(frozen=True)
class TickRequest:
    """The outcome of asking for a run: a new task id, or coalesced into one already queued."""

    task_id: str | None
    coalesced: bool


#: The coordination store, chosen from the settings on first use.
store = SharedStore(timeout_s=2)

# Set when this process cannot tell whether the marker stands for a queued
# run: setting it timed out (the SET may still land once the network heals:
# TCP delivers what the socket held) or the publish after it failed. The next
# tick then sets the marker over whatever is there and queues a run, instead
# of coalescing into a run that may not exist for up to PENDING_TTL_S.
_marker_uncertain = threading.Event()


def reset_client() -> None:
    """Forget the store (tests that change the broker)."""
    store.reset()
    _marker_uncertain.clear()


def should_enqueue_tick() -> bool:
    """Mark a run as waiting to start; False when one already is (coalesce into it)."""
    overwrite = _marker_uncertain.is_set()
    try:
        if not store.get().marker_set(PENDING_KEY, PENDING_TTL_S, overwrite=overwrite):
            return False
    except StoreUnavailable as exc:
        # Without the marker we may enqueue a spare run; that is harmless.
        log.warning("tick coalescing unavailable: %s", type(exc.__cause__ or exc).__name__)
        _marker_uncertain.set()
    return True


def tick_queued() -> None:
    """The run a tick asked for is in the broker: the marker stands for it again."""
    _marker_uncertain.clear()


def tick_not_queued() -> None:
    """The publish after should_enqueue_tick() failed: no run stands behind the marker."""
    _marker_uncertain.set()
    run_started()


def run_started() -> None:
    """Called as a run starts: ticks from now on must start another run."""
    try:
        store.get().forget(PENDING_KEY)
    except StoreUnavailable as exc:
        log.warning("could not clear the tick marker: %s", type(exc.__cause__ or exc).__name__)


def claim_wakeup(seconds_until_due: float | None) -> float | None:
    """The countdown for one run at the next send_after, or None when none is needed.

    None when nothing is pending, when tasks run inline (an inline "countdown"
    would run at once and recurse), or when a wake-up is already armed at or
    before that time.
    """
    if seconds_until_due is None:
        return None
    if app.conf.task_always_eager:
        return None
    # A floor, so rows another claimer holds cannot spin us in a tight loop.
    countdown = min(max(seconds_until_due, 0.05), MAX_WAKE_DELAY_S)
    try:
        if not store.get().wake_arm(WAKE_KEY, countdown):
            return None
    except StoreUnavailable as exc:
        log.warning("wake-up dedup unavailable: %s", type(exc.__cause__ or exc).__name__)
    return countdown


#: The task a queue run is.
QUEUE_RUN = "process_notification_queue"


def request_tick() -> TickRequest:
    """Enqueue process_notification_queue unless a run is already waiting to start.

    The publish is bounded (tasks/broker/tick_publisher.py): on a broker that went
    silent it raises within seconds instead of waiting forever.
    """
    if not should_enqueue_tick():
        return TickRequest(None, True)
    run = registered_task(QUEUE_RUN)
    if app.conf.task_always_eager:
        return TickRequest(run.apply_async().id, False)
    try:
        result = tick_publisher.publisher.publish(
            lambda producer: run.apply_async(
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
        registered_task(QUEUE_RUN).apply_async(countdown=countdown,
                                               kwargs={"reason": "wake-up"})
    return countdown
