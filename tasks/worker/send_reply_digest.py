"""The `send_reply_digests` task: e-mail staff what customers wrote back.

The sending itself is tasks.sending.digest's; this is its Celery face.
"""

from __future__ import annotations

from celery import Task

from tasks.broker.app import app
from tasks.coordination.worker_metrics import record_retry
from tasks.sending import digest
from tasks.sending.digest import batch_key as batch_key  # tests reach it here
from tasks.sending.digest import run as run  # tests reach it here
from tasks.worker.infrastructure_retry import INFRASTRUCTURE_RETRY


@app.task(name="send_reply_digests", bind=True, acks_late=True, **INFRASTRUCTURE_RETRY)
def send_reply_digests(self: Task, digest_ids: list[int], token: str,
                       slot_at: float | None = None) -> str:
    """E-mail staff the named reply digests of one claim (`token`); idempotent."""
    ids = [int(i) for i in digest_ids]
    outcome = digest.run(ids, token, slot_at)
    if outcome.is_retry:
        record_retry("email")
    if outcome.retry_in_s is not None:
        # A fresh message, not self.retry(): attempts are counted in the database.
        send_reply_digests.apply_async(
            (ids, token), {"slot_at": outcome.slot_at}, countdown=outcome.retry_in_s,
            argsrepr=f"(reply_digests={ids})", add_to_parent=False)
    return str(outcome)
