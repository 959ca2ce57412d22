"""Digests job: claim the staff e-mails about customers' replies that are due.

New digests go out up to the hourly cap, one send_reply_digests task per
RESEND_BATCH_SIZE; what the cap held back goes as one summary e-mail.
"""

from __future__ import annotations

import uuid

from db import replies
from tasks.broker.app import app
from tasks.broker.dispatch import dispatch_reply_digests
from tasks.database import engine
from tasks.maintenance.job import RunBudget, TickResult
from tasks.sending.bounds import lease_seconds


def claim_reply_digests(run: RunBudget) -> TickResult:
    """Claim the digests whose debounce window closed (or whose send lapsed) and publish them."""
    lease_s = lease_seconds(run.settings)
    token = uuid.uuid4().hex
    limit = run.settings.claim_batch_size
    with engine().begin() as conn:
        ids = replies.claim_digests(conn, limit=limit, lease_s=lease_s, token=token)
        # What the hourly cap held back: one summary e-mail, one task.
        summary = replies.claim_summary(conn, lease_s=lease_s, token=token)
    return TickResult(reply_digests=dispatch_reply_digests(ids, token)
                      + _publish_summary(summary, token))


def _publish_summary(digest_ids: list[int], token: str) -> int:
    """One task for the whole summary: it is one e-mail, so never split into batches."""
    if digest_ids:
        if "send_reply_digests" not in app.tasks:
            app.loader.import_default_modules()
        app.tasks["send_reply_digests"].apply_async(
            (digest_ids, token), argsrepr=f"(reply_summary={len(digest_ids)} digests)",
            add_to_parent=False)
    return len(digest_ids)
