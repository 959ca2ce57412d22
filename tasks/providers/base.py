"""What every provider adapter offers, and the one error type the send tasks understand."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from db.errors import RegnotifyError


@dataclass(frozen=True)
class Sms:
    """One text message to send."""

    to: str
    body: str
    status_callback: str | None = None


@dataclass(frozen=True)
class Email:
    """One e-mail to send; `idempotency_key` is the same on every retry of a delivery."""

    to: str
    subject: str
    html: str
    text: str
    idempotency_key: str
    tags: tuple[tuple[str, str], ...] = ()


class ProviderError(RegnotifyError):
    """A provider call that did not end in an accepted message.

    `transient` errors are retried; the rest fail the delivery at once.
    `outcome_unknown` means the provider may have accepted the message anyway
    (a timeout, a dropped connection, a 5xx), so a retry must check first.
    `rate_limited`: the provider refused for its request rate (HTTP 429), so
    the call was a wait for a slot, not a failed attempt (see delivery_flow).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        transient: bool,
        outcome_unknown: bool = False,
        retry_after: float | None = None,
        opt_out: bool = False,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.transient = transient
        self.outcome_unknown = outcome_unknown
        self.retry_after = retry_after
        self.opt_out = opt_out
        self.rate_limited = rate_limited


class SmsProvider(Protocol):
    """Sends texts; can look for a text it may already have accepted."""

    name: str

    def send(self, sms: Sms) -> str:
        """Send; return the provider's message id or raise ProviderError."""
        ...

    def find_sent(self, sms: Sms, since: datetime) -> str | None:
        """The id of an identical message accepted since `since`, if any."""
        ...


@dataclass(frozen=True)
class BatchResult:
    """One e-mail of a batch: the provider's id, or why it alone was refused."""

    message_id: str | None
    error: str | None = None


class EmailProvider(Protocol):
    """Sends e-mails; retries with the same idempotency key are safe."""

    name: str

    def send(self, email: Email) -> str:
        """Send; return the provider's message id or raise ProviderError."""
        ...

    def send_batch(self, emails: list[Email], idempotency_key: str) -> list[BatchResult]:
        """Send several in one request; one result per e-mail, in order."""
        ...


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form), None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
