"""When a send may call its provider: the channel's shared rate limiter, its slot, and waits.

A send first reserves its provider slot (never refused, see
tasks.coordination.rate_limit) and then waits for it: a short wait in the
task, a longer one by a fresh publish of the task for that time (not a Celery
retry: no retry budget is spent), a wait beyond the broker's horizon parked in
the database and released by the queue run (tasks.sending.outcome.parks). A
provider's 429 is a wait too. The call itself then passes the limiter's gate
(`limiter(channel).call()`), which holds its place while it is out.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import cache

from sqlalchemy import Connection

from db import deliveries
from tasks.broker.app import app
from tasks.coordination.rate_limit import RateLimiter
from tasks.coordination.stores import coordination_redis_url
from tasks.database import autocommit_engine
from tasks.providers.base import ProviderError
from tasks.sending.bounds import call_bound_s
from tasks.sending.outcome import Outcome, arm_release, parks
from tasks.settings import get_settings

#: Longest a task sleeps for its slot; beyond it the task is published again for it.
MAX_RATE_SLEEP_S = 1.0
#: A task for a reserved slot that starts later than this lost the slot (a
#: worker restart, a busy broker): it reserves a new one rather than crowd others.
SLOT_LATE_S = 2.0
#: A task published for a slot starts this much before it, to render and
#: claim first: a request that leaves late crowds the next second.
PREPARE_LEAD_S = 0.25
#: Wait after a 429 that named no Retry-After.
DEFAULT_RATE_LIMIT_WAIT_S = 1.0


@cache
def _limiter(channel: str) -> RateLimiter:
    settings = get_settings()
    rate = settings.twilio_rate_per_s if channel == "sms" else settings.resend_rate_per_s
    return RateLimiter(channel, rate, redis_url=coordination_redis_url(),
                       call_timeout_s=call_bound_s(settings))


def limiter(channel: str) -> RateLimiter:
    """The shared rate limiter of a channel's provider."""
    return _limiter(channel)


@dataclass(frozen=True)
class Slot:
    """When a send may call its provider.

    `later` set: not in this run (published again, or parked). Otherwise the
    run renders, waits for its slot and the gate, and only then claims:
    `go_at` is the slot reserved for it (epoch s), or None to reserve one at
    the wait. `departed`: the gate admitted the call along with the slot
    (RateLimiter.reserve_and_depart); the call must follow at once.
    """

    later: Outcome | None = None
    go_at: float | None = None
    departed: str | None = None

    def wait(self, channel: str) -> None:
        """Sleep until the slot (taking it now when none was reserved).

        Called before the claim: nothing is leased while it sleeps. The call
        then goes through the limiter's gate (`limiter(channel).call()`),
        which also admits it before the claim.
        """
        go_at = self.go_at
        if go_at is None:
            go_at = time.time() + _limiter(channel).reserve(math.inf).wait_s
        left = go_at - time.time()
        if left > 0:
            time.sleep(left)


def plan_slot(channel: str, delivery_ids: list[int], slot_at: float | None,
              reason: str, *, conn: Connection | None = None, depart: bool = False) -> Slot:
    """This run's slot: the one reserved for it, one close enough, or a later run.

    The slot is reserved here, before the claim, so a claimed delivery never
    waits longer than MAX_RATE_SLEEP_S for it: a wait longer than that is a
    later run, with no lease held meanwhile. `depart`: the caller claims and
    calls right after this, so a slot that is now also passes the gate here,
    in the same round trip (the caller then passes `departed` to `call`).
    """
    if slot_at is not None and time.time() - slot_at <= SLOT_LATE_S:
        return Slot(go_at=slot_at)
    lim = _limiter(channel)
    reservation = (lim.reserve_and_depart(conn=conn) if depart
                   else lim.reserve(math.inf, conn=conn))
    wait_s = reservation.wait_s
    if sleeps_through(wait_s):
        return Slot(go_at=time.time() + wait_s, departed=reservation.departed)
    return Slot(later=wait_later(delivery_ids, wait_s, reason, conn=conn))


def sleeps_through(wait_s: float) -> bool:
    """A wait for a slot this run sleeps through; a longer one is a later run."""
    # Eager tasks (tests) run inline: a countdown would not wait, so they sleep.
    return app.conf.task_always_eager or wait_s <= MAX_RATE_SLEEP_S


def wait_later(delivery_ids: list[int], wait_s: float, reason: str, *,
               conn: Connection | None = None) -> Outcome:
    """A reserved slot `wait_s` away: publish the task again a little before it, or park.

    `conn`: an autocommit connection the caller holds (else one is checked out).
    """
    slot_at = time.time() + wait_s
    parked = parks(wait_s)
    if conn is not None:
        deliveries.note_wait(conn, delivery_ids, wait_s, parked=parked)
    else:
        with autocommit_engine().connect() as own:
            deliveries.note_wait(own, delivery_ids, wait_s, parked=parked)
    if parked:
        arm_release(wait_s)
        return Outcome("parked", f"{reason}: slot in {wait_s:.1f}s")
    return Outcome("waiting", f"{reason}: slot in {wait_s:.1f}s",
                   retry_in_s=round(max(0.0, wait_s - PREPARE_LEAD_S), 3), slot_at=slot_at,
                   ids=tuple(delivery_ids))


def rate_limit_wait_s(channel: str, exc: ProviderError) -> float:
    """A provider 429: nobody gets a slot before its Retry-After; the wait for ours."""
    lim = _limiter(channel)
    lim.defer(exc.retry_after if exc.retry_after is not None else DEFAULT_RATE_LIMIT_WAIT_S)
    return lim.reserve(math.inf).wait_s


def after_rate_limit(channel: str, delivery_ids: list[int], exc: ProviderError, *,
                     outcome_unknown: bool) -> Outcome:
    """A provider 429 for deliveries: a wait, not a failed attempt."""
    with autocommit_engine().connect() as conn:
        deliveries.rate_limited(conn, delivery_ids, outcome_unknown=outcome_unknown,
                                code=exc.code, message=exc.message)
    wait = rate_limit_wait_s(channel, exc)
    return wait_later(delivery_ids, wait, f"provider rate limit ({exc.code})")
