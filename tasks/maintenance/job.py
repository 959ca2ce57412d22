"""The shape every queue-run job has: it takes the run's budget and returns its counts.

A queue run (the `process_notification_queue` task, tasks/worker/queue_tick.py)
is a tuple of jobs run in order, as Oban runs its plugins: each job is one
module of tasks/maintenance/ with one function `(RunBudget) -> TickResult`
that fills in only its own fields. The run adds the jobs' results up, so a
new job is one line in that tuple (and its count's field here).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields

from tasks.settings import Settings

#: A run hands over to a fresh one after this long, so one huge backlog
#: never pins a worker thread or outlives the broker's patience.
RUN_BUDGET_S = 20.0


@dataclass(frozen=True)
class RunBudget:
    """One run's settings and time budget, handed to each of its jobs in turn."""

    settings: Settings
    #: time.monotonic() after which a job with work left stops and sets
    #: TickResult.continued, so a fresh run picks up where it stopped.
    deadline: float

    @classmethod
    def start(cls, settings: Settings, budget_s: float = RUN_BUDGET_S) -> RunBudget:
        """The budget of a run starting now."""
        return cls(settings, time.monotonic() + budget_s)

    def spent(self) -> bool:
        """True once the run's time is up."""
        return time.monotonic() > self.deadline


@dataclass
class TickResult:
    """What one run did, or one job of it (the fields that job owns; the rest stay unset)."""

    #: Queue rows claimed and closed (claim).
    closed: int = 0
    #: Deliveries those rows produced, handed to send tasks (claim).
    dispatched: int = 0
    #: Deliveries whose send task went missing, dispatched again (sweep).
    swept: int = 0
    #: Held for quiet hours, and now the window opened (holds).
    released: int = 0
    #: Parked for a rate slot or a long backoff, and now within the broker's horizon (unpark).
    unparked: int = 0
    #: Customers' replies gathered into e-mails to staff, now due (or lost mid-send) (digests).
    reply_digests: int = 0
    #: Claim transactions the claim job ran.
    batches: int = 0
    #: A job stopped at the deadline with work left: the run starts a fresh one at once.
    continued: bool = False
    #: Seconds until the next work is due, or None when nothing waits (next_due).
    wake_in_s: float | None = None

    def __add__(self, other: TickResult) -> TickResult:
        """Two results as one: counts add up, a continuation wins, the earlier wake-up wins."""
        merged = TickResult()
        for field in fields(TickResult):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if field.name == "continued":
                value: object = mine or theirs
            elif field.name == "wake_in_s":
                value = min((t for t in (mine, theirs) if t is not None), default=None)
            else:
                value = mine + theirs
            setattr(merged, field.name, value)
        return merged


#: A queue-run job: one small function in its own module of tasks/maintenance/.
Job = Callable[[RunBudget], TickResult]
