"""What a send task did, and the one decision after a provider error: fail, retry or park.

Every send path asks `decide` when its provider call fails: one delivery
(tasks.sending.delivery_flow), an e-mail batch (tasks.sending.email_batch)
and staff reply digests (tasks.sending.digest). The deliveries record the
decision in one place (tasks.sending.failure), so a fallback to the other
channel or an opt-out can never depend on which path sent them.

Waiting is not failing. A provider's 429 for its request rate is a wait for
a slot ("wait"), no attempt spent. Any other error is an attempt: it fails
for good when it is permanent or the attempts ran out, and is tried again
after a backoff otherwise. A wait or a backoff longer than the broker holds
a countdown parks in the database instead (`parks`, the one park rule), and
a wake-up of the queue run is armed for it (`arm_release`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from tasks.broker.app import BROKER_HORIZON_S, app
from tasks.broker.wakeup import arm_wakeup
from tasks.providers.base import ProviderError
from tasks.settings import Settings


@dataclass(frozen=True)
class Outcome:
    """What a send task did; `retry_in_s` set: publish the task again after that long.

    `slot_at` (epoch seconds) is the provider slot reserved for that run;
    `ids` are the deliveries the next run covers (a batch), `leftover` ones
    that need a batch task of their own, `singles` e-mails that must go on
    their own (send_email).
    """

    status: str
    detail: str = ""
    retry_in_s: float | None = None
    slot_at: float | None = None
    ids: tuple[int, ...] = ()
    leftover: tuple[int, ...] = ()
    singles: tuple[int, ...] = ()

    @property
    def is_retry(self) -> bool:
        """A failed attempt tried again through the broker (what the retry metric counts)."""
        return self.status == "retry"

    def __str__(self) -> str:
        return f"{self.status} {self.detail}".strip()


Action = Literal["wait", "fail", "retry", "park"]


@dataclass(frozen=True)
class Decision:
    """What to do after one failed provider call.

    `action`: "wait" a provider rate limit (no attempt spent: the caller
    waits for its next slot, which may park); "fail" for good; "retry" after
    `countdown_s` through the broker; "park" that retry in the database.
    `outcome_unknown`: what to record of whether the provider may hold an
    attempt. On "fail": `fall_back` queue the other channel (the SQL still
    decides whether the customer allows one), `opted_out` record that the
    number opted out.
    """

    action: Action
    outcome_unknown: bool
    why: str
    countdown_s: float = 0.0
    fall_back: bool = False
    opted_out: bool = False


def decide(exc: ProviderError, attempts: int, settings: Settings, *,
           was_unknown: bool = False) -> Decision:
    """The one decision after a provider error, for every send path.

    `attempts`: the attempts made so far, this one included. `was_unknown`:
    an earlier attempt may have been accepted. An error of this attempt (a
    quota 429, a 409, a refused lookup) says nothing about that one, so the
    doubt stays, and a message that may have gone out never falls back to
    the other channel (the customer would get two).
    """
    if exc.rate_limited:
        # A 429 accepted nothing: the doubt is what it was before the call.
        return Decision("wait", was_unknown, f"provider rate limit ({exc.code})")
    unknown = was_unknown or exc.outcome_unknown
    max_attempts = settings.send_max_retries + 1
    if not exc.transient or attempts >= max_attempts:
        permanent = not exc.transient
        return Decision(
            "fail", unknown,
            "permanent" if permanent else f"gave up after {attempts} attempts",
            # A number that opted out: the customer said no to texts, and e-mailing
            # them instead is not our call (docs/fallback.md).
            fall_back=permanent and not exc.opt_out and not unknown,
            opted_out=exc.opt_out,
        )
    countdown = backoff_seconds(attempts, settings, exc.retry_after)
    return Decision("park" if parks(countdown) else "retry", unknown,
                    f"attempt {attempts} of {max_attempts}", countdown_s=countdown)


def backoff_seconds(attempt: int, settings: Settings, retry_after: float | None) -> float:
    """Exponential backoff with jitter (half fixed, half random), never before Retry-After."""
    base = settings.send_retry_backoff_base
    ceiling = min(settings.send_retry_backoff_max, base * 2 ** (attempt - 1))
    countdown = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        countdown = max(countdown, retry_after)
    return round(countdown, 3)


def parks(wait_s: float) -> bool:
    """The park rule: a wait the broker cannot hold as a countdown is kept in the database.

    Eager tasks (tests) run inline and never park: nothing would release them.
    """
    return wait_s > BROKER_HORIZON_S and not app.conf.task_always_eager


def arm_release(wait_s: float, *, lead_s: float = BROKER_HORIZON_S / 2) -> None:
    """Wake the queue run for something parked `wait_s` away.

    It releases parked deliveries whose time is within the broker's horizon,
    so by default it wakes half a horizon before their time.
    """
    if not app.conf.task_always_eager:
        arm_wakeup(max(0.0, wait_s - lead_s))
