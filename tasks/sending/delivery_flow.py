"""One send of one delivery: decide, render, wait for a rate slot, lease, call, record.

Shared by `send_sms` and `send_email`; the channel-specific parts are the
provider and the message shape. Every step is safe to repeat: the status
guards in sql/queries/deliveries.sql make a duplicated or stale task a no-op.

Waiting is not failing. A send first reserves its provider slot (never
refused, see tasks.coordination.rate_limit) and then waits for it: a short wait in the
task, a longer one by a fresh publish of the task for that time (not a Celery
retry: no retry budget is spent), a wait beyond the broker's horizon parked in
the database and released by the queue run. A provider's 429 is a wait too.
Only provider calls that fail count against the retry budget.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import Connection

from db import deliveries
from db.connection import PING_AFTER_IDLE_S
from db.deliveries import Claim, Delivery, Refused
from tasks.coordination.broker_redis import coordination_redis_url
from tasks.coordination.rate_limit import RateLimiter
from tasks.database import autocommit_engine, engine
from tasks.messages.rendering import MessageContext, render_email, render_sms
from tasks.providers.base import Email, ProviderError, Sms
from tasks.providers.registry import email_provider, sms_provider
from tasks.sending.bounds import call_bound_s, lease_seconds
from tasks.sending.fallback import dispatch_fallbacks, fall_back
from tasks.settings import Settings, get_settings
from tasks.worker import worker_budget  # noqa: F401  (connects the worker's pool sizing)
from tasks.worker.app import BROKER_HORIZON_S, app
from tasks.worker.queue_tick import arm_wakeup

log = logging.getLogger(__name__)

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

    def __str__(self) -> str:
        return f"{self.status} {self.detail}".strip()


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
    # Eager tasks (tests) run inline: a countdown would not wait, so they sleep.
    if app.conf.task_always_eager or wait_s <= MAX_RATE_SLEEP_S:
        return Slot(go_at=time.time() + wait_s, departed=reservation.departed)
    return Slot(later=wait_later(delivery_ids, wait_s, reason, conn=conn))


def wait_later(delivery_ids: list[int], wait_s: float, reason: str, *,
               conn: Connection | None = None) -> Outcome:
    """A reserved slot `wait_s` away: publish the task again a little before it, or park.

    `conn`: an autocommit connection the caller holds (else one is checked out).
    """
    slot_at = time.time() + wait_s
    parked = wait_s > BROKER_HORIZON_S and not app.conf.task_always_eager
    if conn is not None:
        deliveries.note_wait(conn, delivery_ids, wait_s, parked=parked)
    else:
        with autocommit_engine().connect() as own:
            deliveries.note_wait(own, delivery_ids, wait_s, parked=parked)
    if parked:
        arm_wakeup(wait_s - BROKER_HORIZON_S / 2)
        return Outcome("parked", f"{reason}: slot in {wait_s:.1f}s")
    return Outcome("waiting", f"{reason}: slot in {wait_s:.1f}s",
                   retry_in_s=round(max(0.0, wait_s - PREPARE_LEAD_S), 3), slot_at=slot_at,
                   ids=tuple(delivery_ids))


def after_rate_limit(channel: str, delivery_ids: list[int], exc: ProviderError, *,
                     outcome_unknown: bool) -> Outcome:
    """A provider 429: a wait, not a failed attempt. Nobody gets a slot before Retry-After."""
    with autocommit_engine().connect() as conn:
        deliveries.rate_limited(conn, delivery_ids, outcome_unknown=outcome_unknown,
                                code=exc.code, message=exc.message)
    lim = _limiter(channel)
    lim.defer(exc.retry_after if exc.retry_after is not None else DEFAULT_RATE_LIMIT_WAIT_S)
    wait = lim.reserve(math.inf).wait_s
    return wait_later(delivery_ids, wait, f"provider rate limit ({exc.code})")


def backoff_seconds(attempt: int, settings: Settings, retry_after: float | None) -> float:
    """Exponential backoff with jitter (half fixed, half random), never before Retry-After."""
    base = settings.send_retry_backoff_base
    ceiling = min(settings.send_retry_backoff_max, base * 2 ** (attempt - 1))
    countdown = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        countdown = max(countdown, retry_after)
    return round(countdown, 3)


def status_callback_url(settings: Settings) -> str | None:
    """Where Twilio reports delivery status, when the relay is reachable from outside."""
    if not settings.relay_public_url:
        return None
    return f"{settings.relay_public_url}/webhooks/twilio/status"


def idempotency_key(delivery_id: int) -> str:
    """The Resend Idempotency-Key: one per delivery, the same on every retry."""
    return f"regnotify-delivery-{delivery_id}"


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


@dataclass(frozen=True)
class Prepared:
    """A delivery's rendered message, how to send it, and what the claim stores of it."""

    to: str
    provider: str
    body: str
    subject: str | None
    template: str
    send: Callable[[], str]
    #: Looks for an earlier attempt the provider may have accepted (given
    #: when that attempt started); None where the provider needs no lookup.
    find_earlier: Callable[[datetime], str | None] | None


def _prepare(d: Delivery, settings: Settings) -> Prepared:
    """Render the delivery's message for its channel."""
    assert d.contact is not None
    ctx = message_context(d, settings)
    if d.channel == "sms":
        rendered_sms = render_sms(ctx)
        texts = sms_provider()
        sms = Sms(to=d.contact, body=rendered_sms.body,
                  status_callback=status_callback_url(settings))
        # The earlier attempt's text as stored at its claim, to the number it
        # went to: the customer may have changed number since, and a text
        # Twilio accepted for the old one is this burst's text all the same.
        earlier = Sms(to=d.recipient or d.contact, body=d.body or sms.body)
        return Prepared(sms.to, texts.name, sms.body, None, rendered_sms.template,
                        send=lambda: texts.send(sms),
                        find_earlier=lambda since: texts.find_sent(earlier, since))
    rendered = render_email(ctx)
    mails = email_provider()
    email = Email(to=d.contact, subject=rendered.subject, html=rendered.html, text=rendered.text,
                  idempotency_key=idempotency_key(d.id),
                  tags=(("delivery", str(d.id)), ("stage", d.new_stage)))
    # No lookup: Resend answers a repeated Idempotency-Key with the first send's id.
    return Prepared(email.to, mails.name, email.text, email.subject, rendered.template,
                    send=lambda: mails.send(email), find_earlier=None)


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
    if error.rate_limited:
        return after_rate_limit(d.channel, [d.id], error, outcome_unknown=claim.was_unknown)
    return _after_error(d, claim.attempts_this_run, error, settings,
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
    prepared = _prepare(d, settings)
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
            found = _find_earlier(claim, prepared)
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
        if not app.conf.task_always_eager:
            arm_wakeup(max(0.0, wait_s - BROKER_HORIZON_S / 2))
        log.info("delivery %s: quiet hours at its claim; parked until %s", d.id,
                 refused.quiet_until.isoformat())
        return Outcome("quiet-hours", f"parked until {refused.quiet_until.isoformat()}")
    if refused.skip_reason is not None:
        log.info("delivery %s skipped at its claim: %s", d.id, refused.skip_reason)
        return Outcome("skipped", refused.skip_reason)
    # The address changed between the render and the claim: render again.
    return Outcome("waiting", "the address changed: rendering again", retry_in_s=0.0,
                   slot_at=time.time(), ids=(d.id,))


def _find_earlier(claim: Claim, prepared: Prepared) -> str | None:
    """The id of an earlier attempt of the claimed delivery the provider accepted, if any.

    Twilio has no idempotency key: a previous attempt whose answer was lost
    may have been accepted. Adopt that message rather than send a second.
    """
    if prepared.find_earlier and claim.was_unknown and claim.previous_attempt_at is not None:
        return prepared.find_earlier(claim.previous_attempt_at)
    return None


def _after_error(d: Delivery, attempts: int, exc: ProviderError, settings: Settings, *,
                 was_unknown: bool = False) -> Outcome:
    """Fail now, or record the error and ask to be run again later.

    `was_unknown`: an earlier attempt may have been accepted. An error of this
    attempt (a quota 429, a 409, a refused lookup) says nothing about that
    one, so the flag stays set, and a delivery that may have gone out never
    falls back to the other channel (the customer would get two messages).
    """
    max_attempts = settings.send_max_retries + 1
    unknown = was_unknown or exc.outcome_unknown
    if not exc.transient or attempts >= max_attempts:
        fallback = None
        with engine().begin() as conn:
            deliveries.mark_failed(conn, d.id, exc.code, exc.message, outcome_unknown=unknown)
            if exc.opt_out and d.channel == "sms" and d.contact:
                deliveries.set_sms_opt_out(
                    conn, d.contact, opted_out=True, source=f"twilio:{exc.code}"
                )
            if not exc.transient and not exc.opt_out and not unknown:
                fallback = fall_back(conn, d.id)  # the other channel (tasks/sending/fallback.py)
        dispatch_fallbacks([fallback])
        why = "permanent" if not exc.transient else f"gave up after {attempts} attempts"
        log.warning("delivery %s failed (%s): %s", d.id, why, exc.code)
        return Outcome("failed", f"{exc.code} ({why})")
    countdown = backoff_seconds(attempts, settings, exc.retry_after)
    parked = countdown > BROKER_HORIZON_S and not app.conf.task_always_eager
    with autocommit_engine().connect() as conn:
        deliveries.schedule_retry(
            conn, d.id, countdown_s=countdown, outcome_unknown=unknown,
            code=exc.code, message=exc.message, parked=parked,
        )
    detail = f"{exc.code} (attempt {attempts} of {max_attempts}), again in {countdown:.1f}s"
    if parked:
        arm_wakeup(countdown - BROKER_HORIZON_S / 2)
        return Outcome("retry-parked", detail)
    return Outcome("retry", detail, retry_in_s=countdown, ids=(d.id,))
