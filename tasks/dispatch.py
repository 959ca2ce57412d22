"""Publishing send tasks for deliveries, once the transaction that created them committed."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kombu import Producer

from db.queue import DeliveryRef
from tasks.celery_app import app

try:
    from kombu.exceptions import BatchPublishError
except ImportError:  # kombu before 5.7 publishes one message at a time
    BatchPublishError = None  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

#: Redis commands buffered before a flush: a task and its task-sent event are
#: two, so about a hundred tasks go out per round trip. Small enough that the
#: first sends of a large claim start while the rest are still being published.
PUBLISH_BATCH_COMMANDS = 200


def dispatch(refs: Sequence[DeliveryRef]) -> int:
    """Enqueue one send task per delivery on its channel's queue; returns how many."""
    if not refs:
        return 0
    # One broker connection for the whole batch instead of one per message,
    # and the messages pipelined: publishing them one round trip (and one
    # kombu Redis client) at a time was a tenth of a busy worker's CPU.
    with app.producer_or_acquire() as producer:
        if BatchPublishError is None or not hasattr(producer, "batch"):
            _publish(refs, producer)
            return len(refs)
        try:
            with producer.batch(max_size=PUBLISH_BATCH_COMMANDS):
                _publish(refs, producer)
        except BatchPublishError as exc:
            # A flush failed, so some of these may be queued and some not. The
            # unbatched path retries through broker hiccups, as before; a task
            # published twice finds its delivery done or leased and does nothing.
            log.warning("batched publish failed (%s); publishing %d tasks one by one",
                        exc, len(refs))
            _publish(refs, producer)
    return len(refs)


def _publish(refs: Sequence[DeliveryRef], producer: Producer) -> None:
    from tasks.send_email import send_email
    from tasks.send_sms import send_sms

    for ref in refs:
        task = send_sms if ref.channel == "sms" else send_email
        # add_to_parent=False: inside a tick run Celery would otherwise keep an
        # AsyncResult per published task in the run's request.children until
        # the run ends; nothing reads them, and a run that dispatches 80 000
        # tasks left the worker's memory that much bigger for good.
        task.apply_async(
            (ref.id,), producer=producer, argsrepr=f"(delivery={ref.id}, {ref.channel})",
            add_to_parent=False,
        )
