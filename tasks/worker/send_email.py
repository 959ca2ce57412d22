"""The e-mail tasks: `send_email` for one delivery, `send_email_batch` for up to 100."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Task

from tasks.broker.app import app
from tasks.broker.dispatch import publish_batch
from tasks.coordination.worker_metrics import record_retry
from tasks.sending import delivery_flow, email_batch
from tasks.sending.outcome import Outcome
from tasks.worker.infrastructure_retry import INFRASTRUCTURE_RETRY


def _follow_up(outcome: Outcome, ids: Sequence[int]) -> None:
    if outcome.leftover:
        publish_batch(outcome.leftover)
    for single in outcome.singles:
        send_email.apply_async((single,), argsrepr=f"(delivery={single}, email)",
                               add_to_parent=False)
    if outcome.is_retry:
        record_retry("email")
    if outcome.retry_in_s is not None:
        publish_batch(outcome.ids or ids, countdown=outcome.retry_in_s, slot_at=outcome.slot_at)


@app.task(name="send_email", bind=True, acks_late=True, **INFRASTRUCTURE_RETRY)
def send_email(self: Task, delivery_id: int, slot_at: float | None = None) -> str:
    """Send (or skip, or finish) e-mail delivery `delivery_id`; idempotent."""
    outcome = delivery_flow.run(int(delivery_id), "email", slot_at)
    if outcome.status == "in-batch":
        # Claimed into a batch before: it goes again with that batch's key.
        outcome = email_batch.run([int(delivery_id)], slot_at)
        _follow_up(outcome, [int(delivery_id)])
        return str(outcome)
    if outcome.is_retry:
        record_retry("email")
    if outcome.retry_in_s is not None:
        # A fresh message, not self.retry(): waiting for a slot or a backoff
        # spends no Celery retry budget (attempts are counted in the database).
        send_email.apply_async(
            (int(delivery_id),), {"slot_at": outcome.slot_at}, countdown=outcome.retry_in_s,
            argsrepr=f"(delivery={delivery_id}, email)", add_to_parent=False,
        )
    return str(outcome)


@app.task(name="send_email_batch", bind=True, acks_late=True, **INFRASTRUCTURE_RETRY)
def send_email_batch(self: Task, delivery_ids: list[int], slot_at: float | None = None) -> str:
    """Send these e-mail deliveries in one POST /emails/batch; idempotent."""
    ids = [int(i) for i in delivery_ids]
    outcome = email_batch.run(ids, slot_at)
    _follow_up(outcome, ids)
    return str(outcome)
