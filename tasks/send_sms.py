"""The `send_sms` task: one text per delivery, through the SMS provider."""

from __future__ import annotations

from celery import Task

from tasks import delivery_flow
from tasks.celery_app import app
from tasks.retry_policy import INFRASTRUCTURE_RETRY
from tasks.worker_metrics import record_retry


@app.task(name="send_sms", bind=True, acks_late=True, **INFRASTRUCTURE_RETRY)
def send_sms(self: Task, delivery_id: int) -> str:
    """Send (or skip, or finish) SMS delivery `delivery_id`; idempotent."""
    try:
        return str(delivery_flow.run(int(delivery_id), "sms"))
    except delivery_flow.RetryLater as later:
        record_retry("sms")
        # Attempts are counted in the database, so the broker's count is not a limit.
        # Keep the readable arguments, so Flower shows the retry like the first run.
        raise self.retry(countdown=later.countdown_s, max_retries=None,
                         argsrepr=f"(delivery={delivery_id}, sms)") from None
