"""The bare-Celery reference: a no-op task on the same broker, pool and settings as our worker.

`celery -A bench.bare_celery worker -Q bench_noop ...` runs it. The app copies
every setting of `tasks.broker.app.create_app()` that changes how a worker
takes, runs and acknowledges a message (pool, prefetch, late acks, events,
serializer), so the ratio of our send rate to this one is the cost of our
work per message, not of a different Celery configuration. The Redis
transport is shared too: `create_app()` registers tasks/broker/broker_transport.py
for this process, so the peer's channels reuse their client as ours do.
"""

from __future__ import annotations

import sys
import time

import redis
from celery import Celery
from kombu import Exchange, Queue

from tasks.broker.app import create_app

QUEUE = "bench_noop"

#: The settings a worker's message handling depends on; everything else
#: (our queues, routes, task modules) does not apply to a no-op task.
MIRRORED_SETTINGS = (
    "task_serializer",
    "accept_content",
    "result_serializer",
    "task_ignore_result",
    "result_backend",
    "task_acks_late",
    "task_reject_on_worker_lost",
    "worker_prefetch_multiplier",
    "broker_transport_options",
    "worker_pool",
    "worker_concurrency",
    "worker_send_task_events",
    "task_send_sent_event",
    "enable_utc",
    "timezone",
)


def make_app(broker: str | None = None) -> Celery:
    """The no-op app, configured like ours, on `broker` (default: CELERY_BROKER_URL)."""
    ours = create_app()
    bare = Celery("bench_bare", broker=broker or ours.conf.broker_url)
    bare.conf.update({key: ours.conf[key] for key in MIRRORED_SETTINGS})
    bare.conf.update(
        task_queues=[Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE)],
        task_default_queue=QUEUE,
    )

    # Not shared: each app made here registers its own copy, without a clash.
    @bare.task(name="bench_noop", shared=False)
    def noop() -> None:
        """Nothing: the cost measured is Celery's own per message."""

    return bare


app = make_app()


def worker_argv(concurrency: int, loglevel: str = "info") -> list[str]:
    """The bare worker's command, with the same options `regnotify worker` passes to ours."""
    return [sys.executable, "-m", "celery", "-A", "bench.bare_celery", "worker", "-Q", QUEUE,
            "-c", str(concurrency), "-l", loglevel, "-E"]


def preload(broker: str, count: int) -> None:
    """Publish `count` no-op tasks, over one producer connection."""
    client = make_app(broker)
    task = client.tasks["bench_noop"]
    with client.producer_or_acquire() as producer:
        for _ in range(count):
            task.apply_async(producer=producer)
    client.close()


def wait_drained(broker: str, count: int, timeout_s: float) -> tuple[float, float]:
    """Poll the queue until `count` preloaded tasks have all been taken and acknowledged.

    Returns monotonic times of the first take and of the drain's end. With
    late acks a taken message sits in kombu's `unacked` hash until the task
    returns, so "drained" is an empty queue and an empty hash.
    """
    client = redis.Redis.from_url(broker)
    first: float | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            with client.pipeline(transaction=False) as pipe:
                waiting, unacked = pipe.llen(QUEUE).hlen("unacked").execute()
            now = time.monotonic()
            if first is None and waiting < count:
                first = now
            if waiting == 0 and unacked == 0 and first is not None:
                return first, now
            time.sleep(0.002)
    finally:
        client.close()
    raise TimeoutError(f"bare Celery did not drain {count} tasks in {timeout_s} s")
