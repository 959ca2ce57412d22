"""Several due e-mails in one Resend request (POST /emails/batch, up to 100).

A batch is a set of deliveries written onto their rows (email_batch_id)
before Resend is called, and its Idempotency-Key is derived from that id. A
retry of the batch (a timeout, a redelivered task after a crash) finds the
same rows under the same id and sends the same payload under the same key,
so Resend answers with the first call's ids instead of sending again.

When the membership must change (a member was skipped or finished
meanwhile), Resend would refuse the old key with another payload (409
invalid_idempotent_request), and a new key is one Resend never saw. So:

* the earlier attempt was surely not accepted (a 429, a refusal, or no
  attempt yet): the rest go as a new batch under a new key;
* its outcome is unknown (a timeout, a 5xx, a worker lost mid-call): the
  rest are not sent again. Each ends `failed` with the code
  `outcome_unknown` (counted by /metrics, listed by `status`), for staff to
  re-drive with `retry-failed`, which warns that it may arrive twice. The
  old key is never kept by sending the old payload: that would send to the
  member who left, who may have withdrawn consent.

Permissive validation: one refused address fails only its own delivery,
with Resend's message; the rest are sent.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection

from db import deliveries
from db.deliveries import BatchMember, Delivery
from db.fallback import Fallback
from tasks.database import autocommit_engine, engine
from tasks.providers.base import BatchResult, Email, ProviderError
from tasks.providers.registry import email_provider
from tasks.sending.bounds import lease_seconds
from tasks.sending.delivery_flow import message_context, skip_reason
from tasks.sending.failure import after_error, fail_one
from tasks.sending.fallback import dispatch_fallbacks
from tasks.sending.outcome import Outcome, decide
from tasks.sending.prepare import delivery_email
from tasks.sending.rate_slot import limiter, plan_slot
from tasks.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: The error code of a batch member whose earlier attempt may have been
#: accepted and that no key Resend recognises can send again.
OUTCOME_UNKNOWN = "outcome_unknown"
#: How long Resend is trusted to recognise a key: it forgets them after 24
#: hours; an hour less leaves room for clocks and a request in flight.
KEY_LIFETIME_S = 23 * 3600
#: Claims tried when a member's consent or address changes under the claim.
CLAIM_TRIES = 3


def batch_key(batch_id: str) -> str:
    """The batch's Idempotency-Key: the same on every retry of the same membership."""
    return f"regnotify-batch-{batch_id}"


@dataclass(frozen=True)
class _Claimed:
    batch_id: str
    reused: bool
    members: list[Delivery]
    emails: list[Email]
    attempts: int
    #: Before this claim, an earlier attempt of the batch may have been
    #: accepted: no error of a later attempt makes that less likely.
    uncertain: bool = False


def _still_to_send(delivery_ids: list[int]) -> list[int]:
    """The named e-mails still moving; those that must not go out are skipped here."""
    with autocommit_engine().connect() as conn:
        found = deliveries.load_many(conn, delivery_ids)
        left: list[int] = []
        for d in found:
            if d.channel != "email" or not d.in_flight or d.leased:
                continue
            reason = skip_reason(d)
            if reason:
                deliveries.mark_skipped(conn, d.id, reason)
                continue
            left.append(d.id)
    return left


def _claim(delivery_ids: list[int], settings: Settings
           ) -> tuple[_Claimed | None, list[int], list[int]]:
    """Take one batch's members.

    Returns the batch (or None), ids left for another batch task, and ids
    that must go alone: sent alone before with an outcome unknown, only
    their own Idempotency-Key may send them again.
    """
    leftover: list[int] = []
    singles: list[int] = []
    for _ in range(CLAIM_TRIES):
        with engine().begin() as conn:
            claimed, leftover, singles, again = _claim_once(conn, delivery_ids, settings)
        if not again:
            return claimed, leftover, singles
    return None, leftover, singles


def _claim_once(conn: Connection, delivery_ids: list[int], settings: Settings
                ) -> tuple[_Claimed | None, list[int], list[int], bool]:
    """One try of `_claim` in one transaction; the last item: try again (a member changed)."""
    locked = deliveries.lock_email_batch_candidates(conn, delivery_ids)
    singles = [i for i, b, unknown in locked if b is None and unknown]
    candidates = [(i, b, unknown) for i, b, unknown in locked if b is not None or not unknown]
    if not candidates:
        return None, [], singles, False
    # One earlier batch at a time, whole, so its key is reused; fresh rows otherwise.
    previous = next((b for _, b, _ in candidates if b is not None), None)
    chosen = [i for i, b, _ in candidates if b == previous][: settings.resend_batch_size]
    leftover = [i for i, _, _ in candidates if i not in set(chosen)]
    uncertain = any(unknown for i, _, unknown in candidates if i in set(chosen))
    members: list[Delivery] = []
    for d in deliveries.load_many(conn, chosen):
        reason = skip_reason(d)
        if reason:
            deliveries.mark_skipped(conn, d.id, reason)
        else:
            members.append(d)
    ids = {d.id for d in members}
    reused = False
    if previous is not None:
        gone = deliveries.email_batch_member_ids(conn, previous) - ids
        if any(d.in_flight for d in deliveries.load_many(conn, sorted(gone))):
            # Another task holds part of this batch right now: it sends it.
            return None, leftover, singles, False
        reused = not gone
        if uncertain and not reused:
            _end_unknown(conn, previous, members,
                         f"{len(gone)} of its members left it since, so its "
                         "Idempotency-Key cannot send the rest again")
            return None, leftover, singles, False
        age = deliveries.email_batch_key_age_s(conn, previous) if uncertain else None
        if age is not None and age > KEY_LIFETIME_S:
            _end_unknown(conn, previous, members,
                         f"its Idempotency-Key went out {age / 3600:.0f} h ago and Resend "
                         "no longer recognises it")
            return None, leftover, singles, False
    if not members:
        return None, leftover, singles, False
    batch_id = previous if reused and previous is not None else uuid.uuid4().hex
    emails: list[Email] = []
    rows: list[BatchMember] = []
    for d in members:
        email, template = delivery_email(d, message_context(d, settings))
        emails.append(email)
        rows.append(BatchMember(d.id, email.to, email.text, email.subject, template,
                                d.language))
    result = deliveries.claim_email_batch(
        conn, batch_id, rows, lease_s=lease_seconds(settings), provider=email_provider().name
    )
    if result.refused:
        # A member's consent or address changed under the claim, which took
        # nobody (and ended the ones that no longer match): choose again.
        log.info("batch %s: %d member(s) changed at the claim; choosing again",
                 batch_id, len(result.refused))
        return None, leftover, singles, True
    kept = [(d, e) for d, e in zip(members, emails, strict=True) if d.id in result.taken]
    attempts = max(result.taken.values(), default=1)
    return (_Claimed(batch_id, reused, [d for d, _ in kept], [e for _, e in kept], attempts,
                     uncertain=reused and uncertain),
            leftover, singles, False)


def _end_unknown(conn: Connection, batch_id: str, members: list[Delivery], why: str) -> None:
    """End the members of an uncertain batch that no key Resend recognises can resend."""
    message = (f"batch {batch_id} may have been accepted (its answer was lost), and {why}; "
               "not resent (retry-failed re-drives it, and it may arrive twice)")
    for d in members:
        deliveries.mark_failed(conn, d.id, OUTCOME_UNKNOWN, message, outcome_unknown=True)
    log.warning("batch %s: outcome unknown (%s); %d member(s) not sent again",
                batch_id, why, len(members))


def run(delivery_ids: list[int], slot_at: float | None = None) -> Outcome:
    """Send the named e-mails (and the rest of any earlier batch they were in) as one batch."""
    settings = get_settings()
    left = _still_to_send(delivery_ids)
    if not left:
        return Outcome("done", "nothing left to send")
    slot = plan_slot("email", left, slot_at, "provider rate limit")
    if slot.later is not None:
        return slot.later
    # Every wait before the claim (the slot, then the gate): once claimed, the
    # members wait for nothing but Resend, well within their lease.
    slot.wait("email")
    results: list[BatchResult] = []
    error: ProviderError | None = None
    with limiter("email").call():
        claimed, leftover, singles = _claim(left, settings)
        if claimed is None:
            return Outcome("busy", "nothing to take into a batch", leftover=tuple(leftover),
                           singles=tuple(singles))
        try:
            results = email_provider().send_batch(claimed.emails, batch_key(claimed.batch_id))
        except ProviderError as exc:
            error = exc
    # A failed request: the same decision and record as a single send's
    # (tasks.sending.failure), fallbacks and opt-outs included. An error of
    # this attempt (a quota 429, a 409 invalid_idempotent_request, which the
    # adapter reports outcome_unknown) leaves an earlier lost answer as
    # unknown as it was: resetting the flag let the next membership change
    # send the others again under a new key.
    outcome = _record(claimed, results, settings) if error is None else after_error(
        claimed.members, claimed.attempts, error, settings, was_unknown=claimed.uncertain,
        label=f"batch {claimed.batch_id}: ")
    return Outcome(outcome.status, outcome.detail, outcome.retry_in_s, outcome.slot_at,
                   outcome.ids, tuple(leftover), tuple(singles))


def _record(claimed: _Claimed, results: list[BatchResult], settings: Settings) -> Outcome:
    ids = [d.id for d in claimed.members]
    sent = failed = 0
    fallbacks: list[Fallback | None] = []
    with engine().begin() as conn:
        accepted = {d.id: r.message_id for d, r in zip(claimed.members, results, strict=True)
                    if r.message_id}
        deliveries.mark_sent_many(conn, accepted)
        sent = len(accepted)
        for d, result in zip(claimed.members, results, strict=True):
            if result.message_id:
                continue
            # Refused for its own address: decided and recorded as a lone
            # e-mail's refusal would be (the other channel, where allowed).
            # Resend refused it, so it was not accepted, whatever came before.
            refusal = ProviderError("validation_error", result.error or "refused by Resend",
                                    transient=False)
            decision = decide(refusal, claimed.attempts, settings)
            fallbacks.append(fail_one(conn, d, refusal, decision))
            failed += 1
    dispatch_fallbacks(fallbacks)
    if failed:
        log.warning("batch %s: %d of %d refused by Resend", claimed.batch_id, failed, len(ids))
    return Outcome("sent", f"batch {claimed.batch_id}: {sent} sent, {failed} refused")
