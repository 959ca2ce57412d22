"""A failed provider call for deliveries, recorded: one delivery or an e-mail batch alike.

The decision is tasks.sending.outcome.decide; this is its one record on
delivery rows, so the single send and the batch cannot differ in what a
provider error does: the same state, the same fallback to the other channel
(tasks/sending/fallback.py), the same opt-out recorded.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection

from db import deliveries
from db.deliveries import Delivery
from db.fallback import Fallback
from tasks.database import engine
from tasks.providers.base import ProviderError
from tasks.sending.fallback import dispatch_fallbacks, fall_back
from tasks.sending.outcome import Decision, Outcome, arm_release, decide
from tasks.sending.rate_slot import after_rate_limit
from tasks.settings import Settings

log = logging.getLogger(__name__)


def after_error(members: list[Delivery], attempts: int, exc: ProviderError,
                settings: Settings, *, was_unknown: bool, label: str = "") -> Outcome:
    """The deliveries of one failed call: wait, fail for good, retry, or park.

    `members`: the delivery of a single send, or a batch's members (one
    channel). `attempts`: this call's attempt count. `was_unknown`: before
    this call, an earlier attempt may have been accepted. `label` names a
    batch in the outcome and the log.
    """
    decision = decide(exc, attempts, settings, was_unknown=was_unknown)
    ids = [d.id for d in members]
    if decision.action == "wait":
        return after_rate_limit(members[0].channel, ids, exc,
                                outcome_unknown=decision.outcome_unknown)
    if decision.action == "fail":
        return _fail(members, exc, decision, label)
    parked = decision.action == "park"
    with engine().begin() as conn:
        for i in ids:
            deliveries.schedule_retry(conn, i, countdown_s=decision.countdown_s,
                                      outcome_unknown=decision.outcome_unknown,
                                      code=exc.code, message=exc.message, parked=parked)
    detail = f"{label}{exc.code} ({decision.why}), again in {decision.countdown_s:.1f}s"
    if parked:
        arm_release(decision.countdown_s)
        return Outcome("retry-parked", detail)
    return Outcome("retry", detail, retry_in_s=decision.countdown_s, ids=tuple(ids))


def _fail(members: list[Delivery], exc: ProviderError, decision: Decision,
          label: str) -> Outcome:
    with engine().begin() as conn:
        fallbacks = [fail_one(conn, d, exc, decision) for d in members]
    # After the commit: a fallback's task finds its row.
    dispatch_fallbacks(fallbacks)
    who = label.rstrip(": ") or f"delivery {members[0].id}"
    log.warning("%s failed (%s): %s", who, decision.why, exc.code)
    return Outcome("failed", f"{label}{exc.code} ({decision.why})")


def fail_one(conn: Connection, d: Delivery, exc: ProviderError,
             decision: Decision) -> Fallback | None:
    """In the caller's transaction: end `d` for good as `decision` says; its fallback, if any.

    The caller dispatches the fallback after the commit (dispatch_fallbacks).
    """
    deliveries.mark_failed(conn, d.id, exc.code, exc.message,
                           outcome_unknown=decision.outcome_unknown)
    if decision.opted_out and d.channel == "sms" and d.contact:
        # Twilio says the number opted out (STOP): the one opt-out path.
        deliveries.set_sms_opt_out(conn, d.contact, opted_out=True,
                                   source=f"twilio:{exc.code}")
    return fall_back(conn, d.id) if decision.fall_back else None
