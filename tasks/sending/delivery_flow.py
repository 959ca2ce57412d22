"""One send of one delivery: decide, render, wait for a rate slot, lease, call, record.

Shared by `send_sms` and `send_email`; the channel-specific parts are the
provider and the message shape (tasks.sending.prepare). Every step is safe to
repeat: the status guards in sql/queries/deliveries.sql make a duplicated or
stale task a no-op.

Waiting is not failing: the slot and the gate are tasks.sending.rate_slot's,
and what a failed call leads to (fail for good, retry, park) is decided once
for every send path in tasks.sending.outcome and recorded in
tasks.sending.failure.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from sqlalchemy import Connection

from db import deliveries
from db.connection import PING_AFTER_IDLE_S
from db.deliveries import Claim, Delivery, Refused
from tasks.database import autocommit_engine
from tasks.messages.rendering import MessageContext
from tasks.providers.base import ProviderError
from tasks.sending.bounds import lease_seconds
from tasks.sending.failure import after_error
from tasks.sending.outcome import Outcome, arm_release
from tasks.sending.outcome import backoff_seconds as backoff_seconds  # tests reach it here
from tasks.sending.prepare import Prepared, prepare
from tasks.sending.rate_slot import _limiter, plan_slot
from tasks.sending.rate_slot import limiter as limiter  # tests reach it here
from tasks.settings import Settings, get_settings

log = logging.getLogger(__name__)


def message_context(d: Delivery, settings: Settings) -> MessageContext:
    return MessageContext(
        dealership=settings.dealership_name,
        customer_name=d.customer_name,
        stage=d.new_stage,
        stage_label=d.new_stage_label,
        vehicle_year=d.vehicle_year,
        make=d.make,
        model=d.model,
        portal_url=settings.portal_url,
        language=d.language,
        was_held=d.was_held,
        is_fallback=d.is_fallback,
    )


def skip_reason(d: Delivery) -> str | None:
    """Why this delivery must not go out after all (the consent or contact changed).

    The consent rule's answer when the delivery was loaded: one SQL function
    (public.regnotify_skip_reason) that the claim statements ask again, and
    decide by for good, in the claim's own transaction; this earlier look
    only spares a render.
    """
    return d.skip_reason


def run(delivery_id: int, channel: str, slot_at: float | None = None) -> Outcome:
    """Carry one delivery as far as it can go now; the outcome may ask for a later run."""
    settings = get_settings()
    # One checkout serves the send's statements (load, claim, mark sent):
    # checking a connection out and in again between them was a tenth of a
    # busy worker's CPU. Each worker thread holds at most one connection at a
    # time either way (the pool is sized for it); a failed call's bookkeeping
    # below runs after this one went back.
    with _HeldConnection() as held:
        step = _send(held, delivery_id, channel, slot_at, settings)
    if isinstance(step, Outcome):
        return step
    d, claim, error = step
    # `was_unknown`: an earlier attempt may have been accepted; an error of
    # this one says nothing about it (a lookup refused, a 409).
    return after_error([d], claim.attempts_this_run, error, settings,
                       was_unknown=claim.was_unknown)


class _HeldConnection:
    """A send's pooled autocommit connection, kept from one statement to the next.

    The pool pings a connection that sat idle longer than PING_AFTER_IDLE_S
    when it is checked out; a held one can sit that long too (a rate slot, a
    slow provider), so it is pinged the same way before its next statement,
    and replaced when the ping fails.
    """

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._used = 0.0

    def __enter__(self) -> _HeldConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def get(self) -> Connection:
        now = time.monotonic()
        conn = self._conn
        if conn is not None and now - self._used > PING_AFTER_IDLE_S:
            try:
                conn.dialect.do_ping(conn.connection.driver_connection)
            except Exception as error:  # any failed ping: a new connection
                conn.invalidate(error)
                conn.close()
                conn = self._conn = None
        if conn is None:
            conn = self._conn = autocommit_engine().connect()
        self._used = now
        return conn


def _send(held: _HeldConnection, delivery_id: int, channel: str, slot_at: float | None,
          settings: Settings) -> Outcome | tuple[Delivery, Claim, ProviderError]:
    """run() up to the provider's answer: an outcome, or the claim and the provider's error."""
    d = deliveries.load(held.get(), delivery_id)
    if d is None:
        return Outcome("gone", "the delivery or its registration was deleted")
    if d.channel != channel:
        return Outcome("ignored", f"delivery {delivery_id} is {d.channel}, not {channel}")
    if not d.in_flight:
        return Outcome("done", f"already {d.status}")
    if d.leased:
        return Outcome("busy", "another worker holds this delivery")

    reason = skip_reason(d)
    if reason:
        deliveries.mark_skipped(held.get(), delivery_id, reason)
        return Outcome("skipped", reason)

    if channel == "email" and d.email_batch_id is not None:
        # Claimed into a batch before: only the batch's own key may resend it
        # (the send_email task hands it to tasks.sending.email_batch).
        return Outcome("in-batch", d.email_batch_id, ids=(delivery_id,))

    # Rendered before the slot is taken: from the slot on, nothing may fail
    # before the call, which holds its place at the gate (see plan_slot).
    prepared = prepare(d, message_context(d, settings), settings)
    slot = plan_slot(channel, [delivery_id], slot_at, "provider rate limit", conn=held.get(),
                     depart=True)
    if slot.later is not None:
        return slot.later
    # Every wait comes before the claim (the slot, then the gate, which holds
    # this call's place from here), so the lease only has to cover the claim,
    # a lookup and a send, each bounded: a claimed delivery can never outlive
    # its lease waiting its turn, and the sweep never hands it to a second task.
    slot.wait(channel)
    # The send's own connection serves the limiter too (PostgreSQL
    # coordination): a send never asks the pool for a second one.
    with _limiter(channel).call(departed=slot.departed, conn=held.get()):
        claim = deliveries.claim(
            held.get(), d.id, lease_s=lease_seconds(settings), recipient=prepared.to,
            provider=prepared.provider, body=prepared.body, subject=prepared.subject,
            template_used=prepared.template, language=d.language,
        )
        if claim is None:
            return Outcome("busy", "another worker took this delivery")
        if isinstance(claim, Refused):
            return _refused(d, claim)
        try:
            found = _find_earlier(claim, prepared, held.get(), d.id)
        except ProviderError as exc:
            # The lookup itself failed: the earlier attempt is still unknown.
            return d, claim, exc
        # A lookup that found nothing does not clear the doubt: Twilio's list
        # can miss a message it accepted moments ago, so a permanent error of
        # this attempt still never falls back to the other channel.
        try:
            message_id = found or prepared.send()
        except ProviderError as exc:
            return d, claim, exc
    deliveries.mark_sent(held.get(), d.id, message_id)
    if found:
        return Outcome("sent", f"adopted {found} from an earlier attempt")
    return Outcome("sent", message_id)


def _refused(d: Delivery, refused: Refused) -> Outcome:
    if refused.quiet_until is not None:
        # Quiet hours at the claim: parked until the window closes; the queue
        # run releases it (release_parked), nothing waits in the broker.
        wait_s = max(0.0, (refused.quiet_until - datetime.now(refused.quiet_until.tzinfo))
                     .total_seconds())
        arm_release(wait_s)
        log.info("delivery %s: quiet hours at its claim; parked until %s", d.id,
                 refused.quiet_until.isoformat())
        return Outcome("quiet-hours", f"parked until {refused.quiet_until.isoformat()}")
    if refused.skip_reason is not None:
        log.info("delivery %s skipped at its claim: %s", d.id, refused.skip_reason)
        return Outcome("skipped", refused.skip_reason)
    # The address changed between the render and the claim: render again.
    return Outcome("waiting", "the address changed: rendering again", retry_in_s=0.0,
                   slot_at=time.time(), ids=(d.id,))


def _find_earlier(claim: Claim, prepared: Prepared, conn: Connection,
                  delivery_id: int) -> str | None:
    """The id of an earlier attempt of the claimed delivery the provider accepted, if any.

    Twilio has no idempotency key: a previous attempt whose answer was lost
    may have been accepted. Adopt that message rather than send a second,
    never one another delivery (a later burst's identical text) records.
    """
    if prepared.find_earlier and claim.was_unknown and claim.previous_attempt_at is not None:
        return prepared.find_earlier(
            claim.previous_attempt_at,
            lambda sid: deliveries.recorded_elsewhere(conn, delivery_id, sid))
    return None
