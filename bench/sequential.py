"""The seed's sender: one provider request after another, like its once-a-minute Edge Function.

It uses our provider adapters (so the real twilio and resend SDKs, with
keep-alive sessions) and alternates SMS and e-mail, the same mix as the
pipeline's workload. It does no database work at all, which only flatters
it: the figure is an upper bound of what a sequential sender can do.
"""

from __future__ import annotations

import time

from bench.stack import Stack
from tasks.providers.base import Email, Sms
from tasks.providers.resend_email import ResendEmail
from tasks.providers.twilio_sms import TwilioSms
from tasks.settings import Settings


def measure(stack: Stack, sends: int) -> float:
    """Send `sends` messages one after another; returns sends per second."""
    settings = Settings(**{key.lower(): value for key, value in stack.env.items()})
    sms, email = TwilioSms(settings), ResendEmail(settings)
    # One of each first, so connection set-up is not part of the figure.
    sms.send(Sms(to="+15550000000", body="warm-up"))
    email.send(Email(to="warmup@example.com", subject="warm-up", html="<p>x</p>", text="x",
                     idempotency_key="bench-seq-warm-up"))
    began = time.perf_counter()
    for i in range(sends):
        if i % 2 == 0:
            sms.send(Sms(to=f"+1556{i:07d}", body=f"Your registration moved on ({i})."))
        else:
            email.send(Email(to=f"seq{i}@example.com", subject="Registration update",
                             html=f"<p>Your registration moved on ({i}).</p>",
                             text=f"Your registration moved on ({i}).",
                             idempotency_key=f"bench-seq-{i}"))
    return sends / (time.perf_counter() - began)
