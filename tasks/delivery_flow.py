"""One send of one delivery: decide, render, rate-limit, lease, call the provider, record.

Shared by `send_sms` and `send_email`; the channel-specific parts are the
provider and the message shape. Every step is safe to repeat: the status
guards in sql/queries/deliveries.sql make a duplicated or stale task a no-op.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from db import deliveries
from db.deliveries import Delivery
from tasks.celery_app import broker_url
from tasks.database import autocommit_engine, engine
from tasks.fallback import dispatch_fallbacks, fall_back
from tasks.providers.base import Email, ProviderError, Sms
from tasks.providers.registry import email_provider, sms_provider
from tasks.rate_limit import RateLimiter
from tasks.rendering import MessageContext, render_email, render_sms
from tasks.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: Longest a task sleeps for a rate-limit slot; beyond it the message waits
#: in the broker instead of holding a worker thread.
MAX_RATE_SLEEP_S = 1.0


@dataclass(frozen=True)
class Outcome:
    """What a send task did, for its result and log line."""

    status: str
    detail: str = ""
    retry_in_s: float | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.detail}".strip()


class RetryLater(Exception):
    """Raised to the task wrapper: schedule another run in `countdown_s`."""

    def __init__(self, countdown_s: float, reason: str) -> None:
        super().__init__(reason)
        self.countdown_s = countdown_s
        self.reason = reason


@cache
def _limiter(channel: str) -> RateLimiter:
    settings = get_settings()
    rate = settings.twilio_rate_per_s if channel == "sms" else settings.resend_rate_per_s
    return RateLimiter(channel, rate, redis_url=broker_url(), burst=max(1, int(rate)))


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


def _context(d: Delivery, settings: Settings) -> MessageContext:
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


def _skip_reason(d: Delivery) -> str | None:
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
    ctx = _context(d, settings)
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


def run(delivery_id: int, channel: str) -> Outcome:
    """Carry one delivery as far as it can go now; raise RetryLater to be called again."""
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

        reason = _skip_reason(d)
        if reason:
            deliveries.mark_skipped(conn, delivery_id, reason)
            return Outcome("skipped", reason)

        reservation = _limiter(channel).reserve(MAX_RATE_SLEEP_S)
        if not reservation.granted:
            countdown = reservation.wait_s + random.uniform(0, 0.5)
            deliveries.release(conn, delivery_id, countdown)
            raise RetryLater(countdown, "provider rate limit")
        if reservation.wait_s > 0:
            time.sleep(reservation.wait_s)

        prepared = _prepare(d, settings)
        claim = deliveries.claim(
            conn, d.id, lease_s=lease_seconds(settings), recipient=prepared.to,
            provider=prepared.provider, body=prepared.body, subject=prepared.subject,
            template_used=prepared.template,
        )
    if claim is None:
        return Outcome("busy", "another worker took this delivery")
    return _call_provider(d, claim.attempts_this_run, prepared, settings)


def _call_provider(d: Delivery, attempts: int, prepared: Prepared,
                   settings: Settings) -> Outcome:
    """Send the claimed delivery (or adopt an earlier accepted attempt) and record it."""
    try:
        found = None
        if prepared.find_earlier and d.outcome_unknown and d.last_attempt_at is not None:
            # Twilio has no idempotency key: a previous attempt may have been
            # accepted. Adopt that message rather than send a second one.
            found = prepared.find_earlier(d.last_attempt_at)
        message_id = found or prepared.send()
    except ProviderError as exc:
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
    with autocommit_engine().connect() as conn:
        deliveries.schedule_retry(
            conn, d.id, countdown_s=countdown, outcome_unknown=exc.outcome_unknown,
            code=exc.code, message=exc.message,
        )
    raise RetryLater(countdown, f"{exc.code} (attempt {attempts} of {max_attempts})")
