"""Development providers: they log what would have been sent and accept everything."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from tasks.providers.base import BatchResult, Email, Sms

log = logging.getLogger("regnotify.console")


class ConsoleSms:
    """Prints texts instead of sending them."""

    name = "console"

    def send(self, sms: Sms) -> str:
        """Log the text; return a made-up id."""
        message_id = f"console-sms-{uuid.uuid4().hex[:12]}"
        log.info("SMS %s to %s: %s", message_id, sms.to, sms.body)
        return message_id

    def find_sent(self, sms: Sms, since: datetime,
                  recorded: Callable[[str], bool] | None = None) -> str | None:
        """Nothing to look up: a console send cannot have half-happened."""
        return None


class ConsoleEmail:
    """Prints e-mails instead of sending them."""

    name = "console"

    def send(self, email: Email) -> str:
        """Log the e-mail; return a made-up id."""
        message_id = f"console-email-{uuid.uuid4().hex[:12]}"
        log.info("E-mail %s to %s: %s\n%s", message_id, email.to, email.subject, email.text)
        return message_id

    def send_batch(self, emails: list[Email], idempotency_key: str) -> list[BatchResult]:
        """Log each e-mail of the batch."""
        return [BatchResult(self.send(email)) for email in emails]
