"""The Celery application: Redis broker, JSON only, late acks, one queue per kind of work."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from tasks.broker import broker_transport
from tasks.settings import DEFAULT_BROKER_URL, get_settings

#: The tick runs on its own queue so a backlog of sends never delays claiming.
QUEUE_TICK = "notifications"
QUEUE_SMS = "sms"
QUEUE_EMAIL = "email"
ALL_QUEUES = (QUEUE_TICK, QUEUE_SMS, QUEUE_EMAIL)


#: Redis redelivers an unacknowledged message after this long. It must exceed
#: every countdown we schedule (rate-slot waits and retries beyond a minute
#: park in the database, see tasks.sending.outcome.parks and BROKER_HORIZON_S; the
#: wake-up caps at a minute) or a waiting message would be delivered twice.
#: Lost work is found sooner by the sweep, which reads the database.
VISIBILITY_TIMEOUT_S = 3600

#: Longest a wait is held as a broker countdown (an unacked message: Redis
#: redelivers it after the visibility timeout, RabbitMQ cuts the consumer off
#: after consumer_timeout, 30 min by default). Longer waits park in the
#: database and the queue run publishes them when they come within reach.
BROKER_HORIZON_S = 60.0


def broker_url() -> str:
    """CELERY_BROKER_URL, or a Redis on localhost."""
    return get_settings().celery_broker_url or DEFAULT_BROKER_URL


def create_app() -> Celery:
    """Build the app from the environment's settings."""
    # Before any connection: a Redis broker's channels then share one client
    # each instead of building one per message (tasks/broker/broker_transport.py).
    broker_transport.use()
    settings = get_settings()
    app = Celery("regnotify", broker=broker_url(), include=[
        "tasks.worker.queue_tick",
        "tasks.worker.send_sms",
        "tasks.worker.send_email",
        "tasks.worker.send_reply_digest",
    ])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # Deliveries live in PostgreSQL; nothing reads task results.
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Each queue with its own exchange and key: sharing the default ones
        # would bind all three to one routing key and copy every message.
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name)
                     for name in ALL_QUEUES],
        task_default_queue=QUEUE_TICK,
        task_create_missing_queues=False,
        task_routes={
            "process_notification_queue": {"queue": QUEUE_TICK},
            "send_sms": {"queue": QUEUE_SMS},
            "send_email": {"queue": QUEUE_EMAIL},
            "send_email_batch": {"queue": QUEUE_EMAIL},
            "send_reply_digests": {"queue": QUEUE_EMAIL},
        },
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # Sends wait on the network, not the CPU: threads give many concurrent
        # provider calls per process at a fraction of prefork's memory.
        worker_pool="threads",
        worker_concurrency=settings.worker_concurrency,
        # Flower needs task events.
        worker_send_task_events=True,
        task_send_sent_event=True,
        enable_utc=True,
        timezone="UTC",
    )
    return app


app = create_app()
