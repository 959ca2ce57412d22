"""The `send_sms` task: one text per delivery, through the SMS provider."""

from __future__ import annotations

from celery import Task

from tasks.broker.app import app
from tasks.coordination.worker_metrics import record_retry
from tasks.sending import delivery_flow
from tasks.worker.infrastructure_retry import INFRASTRUCTURE_RETRY


@app.task(name="send_sms", bind=True, acks_late=True, **INFRASTRUCTURE_RETRY)
def send_sms(self: Task, delivery_id: int, slot_at: float | None = None) -> str:
    """Send (or skip, or finish) SMS delivery `delivery_id`; idempotent.

    `slot_at`: the provider slot (epoch seconds) reserved for this run.
    """
    outcome = delivery_flow.run(int(delivery_id), "sms", slot_at)
    if outcome.is_retry:
        record_retry("sms")
    if outcome.retry_in_s is not None:
        # A fresh message, not self.retry(): waiting for a slot or a backoff
        # spends no Celery retry budget (attempts are counted in the database).
        send_sms.apply_async(
            (int(delivery_id),), {"slot_at": outcome.slot_at}, countdown=outcome.retry_in_s,
            argsrepr=f"(delivery={delivery_id}, sms)", add_to_parent=False,
        )
    return str(outcome)
