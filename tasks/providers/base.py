"""What every provider adapter offers, and the one error type the send tasks understand
(ProviderError, a member of the error family defined in tasks.exceptions)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tasks.exceptions import ProviderError

__all__ = ["BatchResult", "Email", "EmailProvider", "ProviderError", "Sms", "SmsProvider",
           "parse_retry_after"]


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


class SmsProvider(Protocol):
    """Sends texts; can look for a text it may already have accepted."""

    name: str

    def send(self, sms: Sms) -> str:
        """Send; return the provider's message id or raise ProviderError."""
        ...

    def find_sent(self, sms: Sms, since: datetime,
                  recorded: Callable[[str], bool] | None = None) -> str | None:
        """The id of an identical message accepted around `since`, if any.

        `recorded(id)`: whether another delivery already owns that message,
        which is then never the one looked for.
        """
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
