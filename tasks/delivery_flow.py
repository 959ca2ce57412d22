"""One send of one delivery: decide, render, wait for a rate slot, lease, call, record.

Shared by `send_sms` and `send_email`; the channel-specific parts are the
provider and the message shape. Every step is safe to repeat: the status
guards in sql/queries/deliveries.sql make a duplicated or stale task a no-op.

Waiting is not failing. A send first reserves its provider slot (never
refused, see tasks.rate_limit) and then waits for it: a short wait in the
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

from db import deliveries
from db.deliveries import Delivery
from tasks.broker_redis import coordination_redis_url
from tasks.celery_app import BROKER_HORIZON_S, app
from tasks.database import autocommit_engine, engine
from tasks.fallback import dispatch_fallbacks, fall_back
from tasks.providers.base import Email, ProviderError, Sms
from tasks.providers.registry import email_provider, sms_provider
from tasks.queue_tick import arm_wakeup
from tasks.rate_limit import RateLimiter
from tasks.rendering import MessageContext, render_email, render_sms
from tasks.settings import Settings, get_settings

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
                       call_timeout_s=settings.provider_timeout_s)


def limiter(channel: str) -> RateLimiter:
    """The shared rate limiter of a channel's provider."""
    return _limiter(channel)


@dataclass(frozen=True)
class Slot:
    """When a send may call its provider.

    `later` set: not in this run (published again, or parked). Otherwise the
    run prepares (renders, claims) first and then waits for its slot, so the
    request leaves on time: `go_at` is a slot reserved earlier (epoch s), or
    None to reserve one once prepared.
    """

    later: Outcome | None = None
    go_at: float | None = None

    def wait(self, channel: str) -> None:
        """Sleep until the slot (taking it now when none was reserved).

        The call itself then goes through the limiter's gate
        (`limiter(channel).call()`), right around the provider request.
        """
        go_at = self.go_at
        if go_at is None:
            go_at = time.time() + _limiter(channel).reserve(math.inf).wait_s
        left = go_at - time.time()
        if left > 0:
            time.sleep(left)


def plan_slot(channel: str, delivery_ids: list[int], slot_at: float | None,
              reason: str) -> Slot:
    """This run's slot: the one reserved for it, one close enough, or a later run."""
    if slot_at is not None and time.time() - slot_at <= SLOT_LATE_S:
        return Slot(go_at=slot_at)
    lim = _limiter(channel)
    # One call takes a slot that is near (rather than a look now and a
    # reservation later): a coordination round trip less per send. Eager
    # tasks (tests) run inline: a countdown would not wait, so they sleep.
    near = lim.reserve(math.inf if app.conf.task_always_eager else MAX_RATE_SLEEP_S)
    if near.granted:
        return Slot(go_at=time.time() + near.wait_s)
    return Slot(later=wait_later(delivery_ids, lim.reserve(math.inf).wait_s, reason))


def wait_later(delivery_ids: list[int], wait_s: float, reason: str) -> Outcome:
    """A reserved slot `wait_s` away: publish the task again a little before it, or park."""
    slot_at = time.time() + wait_s
    parked = wait_s > BROKER_HORIZON_S and not app.conf.task_always_eager
    with autocommit_engine().connect() as conn:
        deliveries.note_wait(conn, delivery_ids, wait_s, parked=parked)
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


def lease_seconds(settings: Settings) -> float:
    """How long a claim holds a delivery: a lookup and a send, each bounded by the timeout."""
    return settings.provider_timeout_s * 2 + 15


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
    )


def skip_reason(d: Delivery) -> str | None:
    """Why this delivery must not go out after all (the contact or consent changed)."""
    if not d.contact:
        return "no_contact"
    if d.channel == "sms" and d.sms_opted_out:
        return "opted_out"
    return None


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
        # The earlier attempt's text as stored at its claim (the contact may have changed).
        earlier = Sms(to=d.contact, body=d.body or sms.body)
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
    # Single statements run in autocommit (see tasks.database.autocommit_engine).
    # One checkout serves every statement before the provider call; the
    # connection goes back to the pool while the provider answers.
    with autocommit_engine().connect() as conn:
        d = deliveries.load(conn, delivery_id)
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
            deliveries.mark_skipped(conn, delivery_id, reason)
            return Outcome("skipped", reason)

    if channel == "email" and d.email_batch_id is not None:
        # Claimed into a batch before: only the batch's own key may resend it
        # (the send_email task hands it to tasks.email_batch).
        return Outcome("in-batch", d.email_batch_id, ids=(delivery_id,))

    slot = plan_slot(channel, [delivery_id], slot_at, "provider rate limit")
    if slot.later is not None:
        return slot.later
    # Render and claim while the slot comes closer, so the call leaves on time.
    with autocommit_engine().connect() as conn:
        prepared = _prepare(d, settings)
        claim = deliveries.claim(
            conn, d.id, lease_s=lease_seconds(settings), recipient=prepared.to,
            provider=prepared.provider, body=prepared.body, subject=prepared.subject,
            template_used=prepared.template,
        )
    if claim is None:
        return Outcome("busy", "another worker took this delivery")
    slot.wait(channel)
    return _call_provider(d, claim.attempts_this_run, prepared, settings)


def _call_provider(d: Delivery, attempts: int, prepared: Prepared,
                   settings: Settings) -> Outcome:
    """Send the claimed delivery (or adopt an earlier accepted attempt) and record it."""
    try:
        with _limiter(d.channel).call():
            found = None
            if prepared.find_earlier and d.outcome_unknown and d.last_attempt_at is not None:
                # Twilio has no idempotency key: a previous attempt may have
                # been accepted. Adopt that message rather than send a second.
                found = prepared.find_earlier(d.last_attempt_at)
            message_id = found or prepared.send()
    except ProviderError as exc:
        if exc.rate_limited:
            return after_rate_limit(d.channel, [d.id], exc, outcome_unknown=d.outcome_unknown)
        return _after_error(d, attempts, exc, settings)
    with autocommit_engine().connect() as conn:
        deliveries.mark_sent(conn, d.id, message_id)
    if found:
        return Outcome("sent", f"adopted {found} from an earlier attempt")
    return Outcome("sent", message_id)


def _after_error(d: Delivery, attempts: int, exc: ProviderError, settings: Settings) -> Outcome:
    """Fail now, or record the error and ask to be run again later."""
    max_attempts = settings.send_max_retries + 1
    if not exc.transient or attempts >= max_attempts:
        fallback = None
        with engine().begin() as conn:
            deliveries.mark_failed(conn, d.id, exc.code, exc.message,
                                   outcome_unknown=exc.transient and exc.outcome_unknown)
            if exc.opt_out and d.channel == "sms" and d.contact:
                deliveries.set_sms_opt_out(
                    conn, d.contact, opted_out=True, source=f"twilio:{exc.code}"
                )
            if not exc.transient and not exc.opt_out:
                fallback = fall_back(conn, d.id)  # the other channel (tasks/fallback.py)
        dispatch_fallbacks([fallback])
        why = "permanent" if not exc.transient else f"gave up after {attempts} attempts"
        log.warning("delivery %s failed (%s): %s", d.id, why, exc.code)
        return Outcome("failed", f"{exc.code} ({why})")
    countdown = backoff_seconds(attempts, settings, exc.retry_after)
    parked = countdown > BROKER_HORIZON_S and not app.conf.task_always_eager
    with autocommit_engine().connect() as conn:
        deliveries.schedule_retry(
            conn, d.id, countdown_s=countdown, outcome_unknown=exc.outcome_unknown,
            code=exc.code, message=exc.message, parked=parked,
        )
    detail = f"{exc.code} (attempt {attempts} of {max_attempts}), again in {countdown:.1f}s"
    if parked:
        arm_wakeup(countdown - BROKER_HORIZON_S / 2)
        return Outcome("retry-parked", detail)
    return Outcome("retry", detail, retry_in_s=countdown, ids=(d.id,))
