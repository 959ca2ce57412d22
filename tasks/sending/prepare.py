"""A delivery's message, rendered for its channel, and how to send it.

Rendered before the slot is taken: from the slot on, nothing may fail before
the call, which holds its place at the gate (tasks.sending.rate_slot).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from db.deliveries import Delivery
from tasks.messages.rendering import MessageContext, render_email, render_sms
from tasks.providers.base import Email, Sms
from tasks.providers.registry import email_provider, sms_provider
from tasks.settings import Settings


def status_callback_url(settings: Settings) -> str | None:
    """Where Twilio reports delivery status, when the relay is reachable from outside."""
    if not settings.relay_public_url:
        return None
    return f"{settings.relay_public_url}/webhooks/twilio/status"


def idempotency_key(delivery_id: int) -> str:
    """The Resend Idempotency-Key: one per delivery, the same on every retry."""
    return f"regnotify-delivery-{delivery_id}"


def delivery_email(d: Delivery, ctx: MessageContext) -> tuple[Email, str]:
    """The e-mail of an e-mail delivery, alone or in a batch, and its template's name."""
    assert d.contact is not None
    rendered = render_email(ctx)
    email = Email(to=d.contact, subject=rendered.subject, html=rendered.html, text=rendered.text,
                  idempotency_key=idempotency_key(d.id),
                  tags=(("delivery", str(d.id)), ("stage", d.new_stage)))
    return email, rendered.template


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
    #: when that attempt started, and which messages other deliveries
    #: already record); None where the provider needs no lookup.
    find_earlier: Callable[[datetime, Callable[[str], bool]], str | None] | None


def prepare(d: Delivery, ctx: MessageContext, settings: Settings) -> Prepared:
    """Render the delivery's message (`ctx`) for its channel."""
    assert d.contact is not None
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
                        find_earlier=lambda since, recorded: texts.find_sent(
                            earlier, since, recorded))
    email, template = delivery_email(d, ctx)
    mails = email_provider()
    # No lookup: Resend answers a repeated Idempotency-Key with the first send's id.
    return Prepared(email.to, mails.name, email.text, email.subject, template,
                    send=lambda: mails.send(email), find_earlier=None)
