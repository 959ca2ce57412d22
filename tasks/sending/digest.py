"""Staff reply digests, sent: what customers wrote back, e-mailed to staff.

The queue run claims due digests and publishes the `send_reply_digests` task
(tasks/worker/send_reply_digest.py) with their ids, which runs this. It goes
through the same e-mail provider as the customers' e-mails, under the same
shared rate limit: one digest alone with the Idempotency-Key
`regnotify-reply-digest-<id>`, several in one POST /emails/batch whose key is
derived from its digests, so a retry of the same send never e-mails staff
twice. A send that dies leaves its lease to lapse and the queue run takes the
digest again, under a new claim token: the first task, should it still run
(it sat behind a backlog), finds the digest no longer its own and sends
nothing.

After a provider error it asks the one decision of every send path
(tasks.sending.outcome.decide): wait, fail, retry or park. Where staff mail
differs from a customer's, and only there: it has no other channel to fall
back to and no number to opt out, so a decision's `fall_back` and
`opted_out` do not apply; it records no outcome_unknown, since a digest
keeps its key (digest_keys) and a resend is answered from Resend's record;
and its place in the database is its lease, not a parked row (`_later`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from sqlalchemy import Connection

from db import digest_keys, replies
from db.replies import Digest
from tasks.database import engine
from tasks.messages.reply_mail import digest_email, summary_email
from tasks.providers.base import BatchResult, Email, ProviderError
from tasks.providers.registry import email_provider
from tasks.sending.bounds import lease_seconds
from tasks.sending.outcome import Outcome, arm_release, decide, parks
from tasks.sending.rate_slot import (
    PREPARE_LEAD_S,
    SLOT_LATE_S,
    limiter,
    rate_limit_wait_s,
    sleeps_through,
)
from tasks.settings import get_settings

log = logging.getLogger(__name__)

#: A parked digest's wake-up comes this long after its lease lapses: the
#: queue run takes a digest again only once its lease is over.
LAPSE_MARGIN_S = 1.0


def _emails(taken: list[Digest], dealership: str, console_url: str | None = None
            ) -> list[tuple[Digest, Email]]:
    with engine().connect() as conn:
        quoted = replies.messages(conn, [d.id for d in taken])
        found = []
        for d in taken:
            sender = replies.sender(conn, d.registration_id) if d.registration_id else None
            found.append((d, digest_email(d, sender, quoted.get(d.id, []), dealership,
                                                console_url)))
    return found


def batch_key(ids: list[int]) -> str:
    """A batch's Idempotency-Key: the same for the same digests, within Resend's 256 characters."""
    members = ",".join(str(i) for i in sorted(ids))
    return "regnotify-reply-digests-" + hashlib.sha256(members.encode()).hexdigest()[:32]


def _wait_for_slot(ids: list[int], slot_at: float | None) -> Outcome | None:
    """Sleep for a near slot; a far one: run again for it, or park (see `_later`)."""
    if slot_at is not None and time.time() - slot_at <= SLOT_LATE_S:
        go_at = slot_at
    else:
        wait_s = limiter("email").reserve(math.inf).wait_s
        go_at = time.time() + wait_s
        if not sleeps_through(wait_s):
            return _later(ids, wait_s, parks(wait_s), "waiting", f"rate slot in {wait_s:.1f}s",
                          slot_at=go_at)
    left = go_at - time.time()
    if left > 0:
        time.sleep(left)
    return None


def _groups(conn: Connection, ready: list[Digest]) -> list[tuple[list[int], str | None]]:
    """The requests this run may send: (digest ids, the key they first went under or None).

    A digest sent before goes again only with the digests it first went with,
    under that request's key, so Resend answers from its record rather than
    send a second e-mail. One this claim does not hold all of waits for the
    claim that does. Digests never sent go together under a new key.
    """
    ours = {d.id for d in ready}
    keyed: dict[str, list[int]] = {}
    fresh: list[int] = []
    for digest_id, (key, companions) in sorted(digest_keys.keys(conn, sorted(ours)).items()):
        if key is None:
            fresh.append(digest_id)
        elif set(companions) <= ours:
            keyed[key] = companions
    groups: list[tuple[list[int], str | None]] = [(ids, key) for key, ids in keyed.items()]
    if fresh:
        groups.append((fresh, None))
    return groups


def run(digest_ids: list[int], token: str, slot_at: float | None = None) -> Outcome:
    """Send the named digests of this claim that are still to go: one request per run."""
    settings = get_settings()
    with engine().begin() as conn:
        taken = replies.take(conn, digest_ids, token=token, lease_s=lease_seconds(settings))
    ready = [d for d in taken if d.recipient]
    with engine().begin() as conn:
        for d in taken:
            if not d.recipient:
                # staff_email was unset at the claim: kept, visible, never sent.
                replies.mark_failed(conn, d.id, "no_staff_email",
                                    "notification_config.staff_email is not set")
        groups = _groups(conn, ready)
    if not groups:
        return Outcome("done", "nothing left to send")
    ids, earlier_key = groups[0]
    group = [d for d in ready if d.id in set(ids)]
    if any(d.in_summary for d in group):
        return _run_summary(group, token, slot_at, more=len(groups) > 1)
    # Render before the wait, so the request leaves on its slot.
    mails = _emails(group, settings.dealership_name,
                    settings.relay_public_url and settings.relay_public_url + "/staff")
    later = _wait_for_slot(ids, slot_at)
    if later is not None:
        return later
    key = earlier_key or (mails[0][1].idempotency_key if len(mails) == 1 else batch_key(ids))
    provider = email_provider()
    try:
        with limiter("email").call():
            # Leased afresh only now, past the slot and the gate: the lease
            # covers the call alone, however long the wait before it was.
            with engine().begin() as conn:
                counted = digest_keys.attempt(conn, ids, token=token, key=key,
                                              lease_s=lease_seconds(settings))
            mails = [m for m in mails if m[0].id in counted]
            if not mails:
                return Outcome("done", "taken by a newer claim")
            if len(mails) == 1 and mails[0][1].idempotency_key == key:
                results = [BatchResult(provider.send(mails[0][1]))]
            else:
                results = provider.send_batch([m for _, m in mails], key)
    except ProviderError as exc:
        return _after_error(ids, max(counted.values(), default=1), exc)
    sent = 0
    with engine().begin() as conn:
        for (d, _), result in zip(mails, results, strict=True):
            if result.message_id:
                replies.mark_sent(conn, d.id, result.message_id)
                sent += 1
            else:
                replies.mark_failed(conn, d.id, "validation_error",
                                    result.error or "refused by Resend")
                log.warning("reply digest %d: refused by the provider (check staff_email)",
                            d.id)
    if len(groups) > 1:
        # The other requests go in a run of their own, right away.
        return Outcome("sent", f"{sent} of {len(mails)} digests; more to go",
                       retry_in_s=0.0)
    return Outcome("sent", f"{sent} of {len(mails)} digests")


def _run_summary(group: list[Digest], token: str, slot_at: float | None,
                 more: bool) -> Outcome:
    """The hour's summary: every digest of this group the cap held back, in ONE e-mail.

    Its key is made from the digests it holds and recorded on them before the
    call, like a batch's, so a run after a lost answer sends the same e-mail
    under the same key and Resend answers from its record.
    """
    settings = get_settings()
    ids = [d.id for d in group]
    with engine().connect() as conn:
        quoted = replies.messages(conn, ids)
        parts = [(d, replies.sender(conn, d.registration_id) if d.registration_id else None,
                  quoted.get(d.id, [])) for d in group]
    mail = summary_email(parts, settings.dealership_name)
    later = _wait_for_slot(ids, slot_at)
    if later is not None:
        return later
    counted: dict[int, int] = {}
    try:
        with limiter("email").call():
            with engine().begin() as conn:
                counted = digest_keys.attempt(conn, ids, token=token, key=mail.idempotency_key,
                                              lease_s=lease_seconds(settings))
            if set(counted) != set(ids):
                # Part of the summary is a newer claim's now: that claim sends it whole.
                return Outcome("done", "taken by a newer claim")
            message_id = email_provider().send(mail)
    except ProviderError as exc:
        return _after_error(ids, max(counted.values(), default=1), exc)
    with engine().begin() as conn:
        for i in ids:
            replies.mark_sent(conn, i, message_id)
    if more:
        return Outcome("sent", f"summary of {len(ids)} digests; more to go",
                       retry_in_s=0.0)
    return Outcome("sent", f"summary of {len(ids)} digests")


def _after_error(ids: list[int], attempts: int, exc: ProviderError) -> Outcome:
    decision = decide(exc, attempts, get_settings())
    if decision.action == "wait":
        wait = rate_limit_wait_s("email", exc)
        return _later(ids, wait, parks(wait), "waiting", decision.why, exc=exc,
                      slot_at=time.time() + wait)
    if decision.action == "fail":
        # No fallback, no opt-out: staff mail (see the module's doc).
        with engine().begin() as conn:
            for i in ids:
                replies.mark_failed(conn, i, exc.code, exc.message)
        log.warning("reply digests %s failed: %s", ids, exc.code)
        return Outcome("failed", exc.code)
    return _later(ids, decision.countdown_s, decision.action == "park", "retry",
                  f"{exc.code} ({decision.why})", exc=exc)


def _later(ids: list[int], wait_s: float, parked: bool, status: str, detail: str, *,
           exc: ProviderError | None = None, slot_at: float | None = None) -> Outcome:
    """Come back to these digests `wait_s` from now: this task again, or the queue run.

    A digest's place in the database is its lease. Waiting through the
    broker, the lease covers the wait and the next run's call. Parked
    (tasks.sending.outcome.parks), it lapses when the wait is over, and the
    next queue run takes the digests again under a new claim: the one armed
    here, or, past the wake-up's own horizon, the minute's tick (the queue
    run plans its next wake-up from pending digests, not lapsing leases).
    """
    lease_s = wait_s if parked else wait_s + lease_seconds(get_settings())
    with engine().begin() as conn:
        replies.extend(conn, ids, lease_s=lease_s, code=exc.code if exc else None,
                       message=exc.message if exc else None)
    if parked:
        arm_release(wait_s + LAPSE_MARGIN_S, lead_s=0.0)
        return Outcome(f"{status}-parked" if status == "retry" else "parked", detail)
    again = wait_s if status == "retry" else max(0.0, wait_s - PREPARE_LEAD_S)
    return Outcome(status, detail, retry_in_s=round(again, 3), slot_at=slot_at)
