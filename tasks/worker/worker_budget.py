"""A worker's database connection budget: the pool follows its threads, however they are set.

`regnotify worker -c 64`, `regnotify up --concurrency 64`, `celery -A tasks
worker -c 64` and WORKER_CONCURRENCY all end in the Celery worker's
concurrency; the worker_init signal reads it from the worker itself, so the
pool is sized from what the worker really runs, not from the setting alone.
A send holds one connection at a time (tasks.sending.delivery_flow), so a pool of
one connection per thread never makes a send wait for another's.

At start the worker compares its budget (threads x processes) with the
server's max_connections and, when it does not fit, says so in one line.
"""

from __future__ import annotations

import logging
import sys

from celery.signals import worker_init

from db.connection import raw_connection
from tasks.database import size_pool_for
from tasks.settings import get_settings

log = logging.getLogger(__name__)

#: Pools that run every task in the worker's one process, a thread (or
#: greenlet) per task; the others (prefork) run one task per child process.
_IN_PROCESS = ("threads", "thread", "gevent", "eventlet", "solo")


def threads_and_processes(pool: object, concurrency: int) -> tuple[int, int]:
    """(threads per process, processes) of a Celery worker pool of `concurrency`."""
    name = pool if isinstance(pool, str) else f"{getattr(pool, '__module__', '')}"
    name = str(name).lower()
    if "solo" in name:
        return 1, 1
    if any(kind in name for kind in _IN_PROCESS):
        return concurrency, 1
    return 1, concurrency  # prefork: one task per child process


def budget_line(threads: int, processes: int, max_connections: int) -> str | None:
    """The start-up warning, or None when the budget fits the server."""
    budget = threads * processes
    if budget <= max_connections:
        return None
    return (f"regnotify worker: {threads} thread(s) x {processes} process(es) may hold "
            f"{budget} database connections, more than the server's max_connections "
            f"({max_connections}): lower --concurrency or raise max_connections")


def server_max_connections() -> int:
    """The server's max_connections.

    On a connection of its own, outside the pool: a prefork worker forks its
    children after this, and they must not inherit a pooled connection.
    """
    with raw_connection(get_settings().database_url) as conn:
        row = conn.execute("SHOW max_connections").fetchone()
    assert row is not None
    return int(row["max_connections"])


@worker_init.connect
def _size_for_worker(sender: object = None, **_kwargs: object) -> None:
    concurrency = getattr(sender, "concurrency", None)
    if not isinstance(concurrency, int) or concurrency < 1:
        return  # "auto": resolved later; the setting stands
    threads, processes = threads_and_processes(getattr(sender, "pool_cls", "prefork"),
                                               concurrency)
    size_pool_for(threads)
    try:
        line = budget_line(threads, processes, server_max_connections())
    except Exception as exc:  # the database may still be starting: say nothing now
        log.debug("connection budget not checked: %s", type(exc).__name__)
        return
    if line:
        print(line, file=sys.stderr, flush=True)
