"""Publishing send tasks for deliveries, once the transaction that created them committed."""

from __future__ import annotations

from collections.abc import Sequence

from db.queue import DeliveryRef
from tasks.celery_app import app


def dispatch(refs: Sequence[DeliveryRef]) -> int:
    """Enqueue one send task per delivery on its channel's queue; returns how many."""
    if not refs:
        return 0
    from tasks.send_email import send_email
    from tasks.send_sms import send_sms

    # One broker connection for the whole batch instead of one per message.
    with app.producer_or_acquire() as producer:
        for ref in refs:
            task = send_sms if ref.channel == "sms" else send_email
            task.apply_async(
                (ref.id,), producer=producer, argsrepr=f"(delivery={ref.id}, {ref.channel})"
            )
    return len(refs)
