"""Publishing send tasks for deliveries, once the transaction that created them committed.

Tasks are looked up by their registered names: the task modules (tasks/worker/)
import the send flow, and the send flow dispatches (a fallback, a batch's
leftovers), so importing them here would point an arrow back up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from itertools import groupby

from celery import Task
from kombu import Producer

from db.connector import family_errors
from db.deliveries import Released
from db.errors import PublishUncertain
from db.queue import DeliveryRef
from tasks.broker.app import app
from tasks.settings import get_settings

log = logging.getLogger(__name__)

#: Redis commands buffered before a flush: a task and its task-sent event are
#: two, so about a hundred tasks go out per round trip. Small enough that the
#: first sends of a large claim start while the rest are still being published.
PUBLISH_BATCH_COMMANDS = 200


def registered_task(name: str) -> Task:
    """The registered task `name` (a send, a batch, a digest or the queue run)."""
    if name not in app.tasks:
        # A process that is no worker (the relay, the CLI) has not imported
        # the app's task modules yet.
        app.loader.import_default_modules()
    return app.tasks[name]


def batch_argsrepr(delivery_ids: Sequence[int]) -> str:
    """How Flower shows a batch task: the delivery ids it carries."""
    return f"(deliveries={list(delivery_ids)}, email)"


def publish_batch(delivery_ids: Sequence[int], *, countdown: float | None = None,
                  slot_at: float | None = None, producer: object | None = None) -> None:
    """Publish one send_email_batch task for these deliveries."""
    ids = [int(i) for i in delivery_ids]
    registered_task("send_email_batch").apply_async(
        (ids,), {"slot_at": slot_at}, countdown=countdown, producer=producer,
        argsrepr=batch_argsrepr(ids), add_to_parent=False,
    )


def dispatch(refs: Sequence[DeliveryRef]) -> int:
    """Enqueue the send tasks for these deliveries; returns how many deliveries.

    One send_sms per text. E-mails go in batches of up to RESEND_BATCH_SIZE
    (one send_email_batch task per batch) when more than one is due, and as
    one send_email otherwise.
    """
    if not refs:
        return 0
    # One broker connection for the whole batch instead of one per message,
    # and the messages pipelined: publishing them one round trip (and one
    # kombu Redis client) at a time was a tenth of a busy worker's CPU.
    with app.producer_or_acquire() as producer:
        if not hasattr(producer, "batch"):  # kombu before 5.7: one message at a time
            _publish(refs, producer)
            return len(refs)
        try:
            # Only a flush that failed midway is mapped: any other driver error
            # leaves as it is, for the task's retry (db.connector.BRIEFLY_AWAY).
            with family_errors(only=(PublishUncertain,)), \
                    producer.batch(max_size=PUBLISH_BATCH_COMMANDS):
                _publish(refs, producer)
        except PublishUncertain as exc:
            # A flush failed, so some of these may be queued and some not. The
            # unbatched path retries through broker hiccups, as before; a task
            # published twice finds its delivery done or leased and does nothing.
            log.warning("batched publish failed (%s); publishing %d tasks one by one",
                        exc.detail, len(refs))
            _publish(refs, producer)
    return len(refs)


def _publish(refs: Sequence[DeliveryRef], producer: Producer) -> None:
    emails = [ref.id for ref in refs if ref.channel == "email"]
    for ref in refs:
        if ref.channel == "email" and len(emails) > 1:
            continue
        task = registered_task("send_sms" if ref.channel == "sms" else "send_email")
        # add_to_parent=False: inside a tick run Celery would otherwise keep an
        # AsyncResult per published task in the run's request.children until
        # the run ends; nothing reads them, and a run that dispatches 80 000
        # tasks left the worker's memory that much bigger for good.
        task.apply_async(
            (ref.id,), producer=producer, argsrepr=f"(delivery={ref.id}, {ref.channel})",
            add_to_parent=False,
        )
    if len(emails) > 1:
        size = get_settings().resend_batch_size
        for start in range(0, len(emails), size):
            publish_batch(emails[start:start + size], producer=producer)


def dispatch_reply_digests(digest_ids: Sequence[int], token: str) -> int:
    """Publish send_reply_digests for one claim's digests, up to RESEND_BATCH_SIZE per task."""
    ids = [int(i) for i in digest_ids]
    size = get_settings().resend_batch_size
    for start in range(0, len(ids), size):
        chunk = ids[start:start + size]
        registered_task("send_reply_digests").apply_async(
            (chunk, token), argsrepr=f"(reply_digests={chunk})", add_to_parent=False)
    return len(ids)


def dispatch_released(released: Sequence[Released]) -> int:
    """Publish parked deliveries for their reserved times; returns how many deliveries.

    E-mails parked together (one batch waiting for one slot) share their time
    and go out again as one batch task.
    """
    now = time.time()
    count = 0
    ordered = sorted(released, key=lambda r: (r.channel, r.in_s))
    for (channel, in_s), group in groupby(ordered, key=lambda r: (r.channel, r.in_s)):
        ids = [r.id for r in group]
        slot_at = now + in_s
        if channel == "email" and len(ids) > 1:
            size = get_settings().resend_batch_size
            for start in range(0, len(ids), size):
                publish_batch(ids[start:start + size], countdown=in_s, slot_at=slot_at)
            count += len(ids)
            continue
        task = registered_task("send_sms" if channel == "sms" else "send_email")
        for i in ids:
            task.apply_async((i,), {"slot_at": slot_at}, countdown=in_s,
                             argsrepr=f"(delivery={i}, {channel})", add_to_parent=False)
            count += 1
    return count
