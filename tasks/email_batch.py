"""Several due e-mails in one Resend request (POST /emails/batch, up to 100).

A batch is a set of deliveries written onto their rows (email_batch_id)
before Resend is called, and its Idempotency-Key is derived from that id. A
retry of the batch (a timeout, a redelivered task after a crash) finds the
same rows under the same id and sends the same payload under the same key,
so Resend answers with the first call's ids instead of sending again. When
the membership must change (a member was skipped or finished meanwhile) the
batch gets a new id, hence a new key: Resend would refuse the old key with
another payload (409 invalid_idempotent_request).

Permissive validation: one refused address fails only its own delivery,
with Resend's message; the rest are sent.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from db import deliveries
from db.deliveries import BatchMember, Delivery
from tasks.celery_app import BROKER_HORIZON_S, app
from tasks.database import autocommit_engine, engine
from tasks.delivery_flow import (
    Outcome,
    after_rate_limit,
    backoff_seconds,
    idempotency_key,
    lease_seconds,
    limiter,
    message_context,
    plan_slot,
    skip_reason,
)
from tasks.fallback import dispatch_fallbacks, fall_back
from tasks.providers.base import Email, ProviderError
from tasks.providers.registry import email_provider
from tasks.queue_tick import arm_wakeup
from tasks.rendering import render_email
from tasks.settings import Settings, get_settings

log = logging.getLogger(__name__)


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


def _email(d: Delivery, settings: Settings) -> tuple[Email, str]:
    assert d.contact is not None
    rendered = render_email(message_context(d, settings))
    email = Email(to=d.contact, subject=rendered.subject, html=rendered.html, text=rendered.text,
                  idempotency_key=idempotency_key(d.id),
                  tags=(("delivery", str(d.id)), ("stage", d.new_stage)))
    return email, rendered.template


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
    provider = email_provider()
    with engine().begin() as conn:
        locked = deliveries.lock_email_batch_candidates(conn, delivery_ids)
        singles = [i for i, b, unknown in locked if b is None and unknown]
        candidates = [(i, b) for i, b, unknown in locked if b is not None or not unknown]
        if not candidates:
            return None, [], singles
        # One earlier batch at a time, whole, so its key is reused; fresh rows otherwise.
        previous = next((b for _, b in candidates if b is not None), None)
        chosen = [i for i, b in candidates if b == previous][: settings.resend_batch_size]
        leftover = [i for i, _ in candidates if i not in set(chosen)]
        members: list[Delivery] = []
        for d in deliveries.load_many(conn, chosen):
            reason = skip_reason(d)
            if reason:
                deliveries.mark_skipped(conn, d.id, reason)
            else:
                members.append(d)
        if not members:
            return None, leftover, singles
        ids = {d.id for d in members}
        reused = previous is not None and deliveries.email_batch_member_ids(conn, previous) == ids
        batch_id = previous if reused and previous is not None else uuid.uuid4().hex
        emails: list[Email] = []
        rows: list[BatchMember] = []
        for d in members:
            email, template = _email(d, settings)
            emails.append(email)
            rows.append(BatchMember(d.id, email.to, email.text, email.subject, template))
        taken = deliveries.claim_email_batch(
            conn, batch_id, rows, lease_s=lease_seconds(settings), provider=provider.name
        )
    kept = [(d, e) for d, e in zip(members, emails, strict=True) if d.id in taken]
    attempts = max(taken.values(), default=1)
    return _Claimed(batch_id, reused, [d for d, _ in kept], [e for _, e in kept],
                    attempts), leftover, singles


def run(delivery_ids: list[int], slot_at: float | None = None) -> Outcome:
    """Send the named e-mails (and the rest of any earlier batch they were in) as one batch."""
    settings = get_settings()
    left = _still_to_send(delivery_ids)
    if not left:
        return Outcome("done", "nothing left to send")
    slot = plan_slot("email", left, slot_at, "provider rate limit")
    if slot.later is not None:
        return slot.later
    # Claim and render (a hundred e-mails) while the slot comes closer.
    claimed, leftover, singles = _claim(left, settings)
    if claimed is None:
        return Outcome("busy", "nothing to take into a batch", leftover=tuple(leftover),
                       singles=tuple(singles))
    slot.wait("email")
    outcome = _send(claimed, settings)
    return Outcome(outcome.status, outcome.detail, outcome.retry_in_s, outcome.slot_at,
                   outcome.ids, tuple(leftover), tuple(singles))


def _send(claimed: _Claimed, settings: Settings) -> Outcome:
    ids = [d.id for d in claimed.members]
    provider = email_provider()
    try:
        with limiter("email").call():
            results = provider.send_batch(claimed.emails, batch_key(claimed.batch_id))
    except ProviderError as exc:
        if exc.rate_limited:
            return after_rate_limit("email", ids, exc, outcome_unknown=claimed.reused)
        return _after_error(claimed, exc, settings)
    sent = failed = 0
    fallbacks = []
    with engine().begin() as conn:
        accepted = {d.id: r.message_id for d, r in zip(claimed.members, results, strict=True)
                    if r.message_id}
        deliveries.mark_sent_many(conn, accepted)
        sent = len(accepted)
        for d, result in zip(claimed.members, results, strict=True):
            if result.message_id:
                continue
            deliveries.mark_failed(conn, d.id, "validation_error",
                                   result.error or "refused by Resend")
            # Refused for its own address, as a lone e-mail would be: the
            # other channel, where allowed (tasks/fallback.py).
            fallbacks.append(fall_back(conn, d.id))
            failed += 1
    dispatch_fallbacks(fallbacks)
    if failed:
        log.warning("batch %s: %d of %d refused by Resend", claimed.batch_id, failed, len(ids))
    return Outcome("sent", f"batch {claimed.batch_id}: {sent} sent, {failed} refused")


def _after_error(claimed: _Claimed, exc: ProviderError, settings: Settings) -> Outcome:
    """The whole request failed: fail every member now, or retry the same batch later."""
    ids = [d.id for d in claimed.members]
    max_attempts = settings.send_max_retries + 1
    if not exc.transient or claimed.attempts >= max_attempts:
        with engine().begin() as conn:
            for i in ids:
                deliveries.mark_failed(conn, i, exc.code, exc.message,
                                       outcome_unknown=exc.outcome_unknown or exc.code
                                       == "invalid_idempotent_request")
        why = "permanent" if not exc.transient else f"gave up after {claimed.attempts} attempts"
        log.warning("batch %s failed (%s): %s", claimed.batch_id, why, exc.code)
        return Outcome("failed", f"batch {claimed.batch_id}: {exc.code} ({why})")
    countdown = backoff_seconds(claimed.attempts, settings, exc.retry_after)
    parked = countdown > BROKER_HORIZON_S and not app.conf.task_always_eager
    with engine().begin() as conn:
        for i in ids:
            deliveries.schedule_retry(conn, i, countdown_s=countdown,
                                      outcome_unknown=exc.outcome_unknown, code=exc.code,
                                      message=exc.message, parked=parked)
    detail = (f"batch {claimed.batch_id}: {exc.code} (attempt {claimed.attempts} of "
              f"{max_attempts}), again in {countdown:.1f}s")
    if parked:
        arm_wakeup(countdown - BROKER_HORIZON_S / 2)
        return Outcome("retry-parked", detail)
    return Outcome("retry", detail, retry_in_s=countdown, ids=tuple(ids))
