"""Start the worker afresh when Celery gives up on it, instead of leaving the queues unserved.

kombu can lose a race while the broker connection drops: the consumer
restores unacked messages through a connection another thread has already
closed, and Celery ends the worker with "Unrecoverable error" (seen here
when Redis went away mid-drain; kombu issues #582 and #970 show the same
shape). Nothing is lost, since the database holds every delivery, but a worker that
exits stays gone under honcho or `regnotify up`, where nothing restarts it.

So `regnotify worker` replaces its own process image (same pid, so process
managers and signals still see one process) after a short backoff. It does
so only when the worker ended with an error that no shutdown request caused,
and at most MAX_QUICK_RESTARTS times in a row for workers that die within
HEALTHY_AFTER_S of starting. A worker failing that fast has a problem a
restart will not fix, and the deployment's own restart policy should see it.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from celery.signals import worker_init, worker_shutting_down

log = logging.getLogger(__name__)

#: A worker that ran at least this long was healthy: its restart count starts over.
HEALTHY_AFTER_S = 60.0
MAX_QUICK_RESTARTS = 5
MAX_BACKOFF_S = 30.0
#: Carries the count of quick restarts across exec.
RESTARTS_ENV = "REGNOTIFY_WORKER_RESTARTS"

_stop_requested = False
_worker: object | None = None


@worker_init.connect
def _remember_worker(sender: object = None, **_kwargs: object) -> None:
    # app.start() does not return the worker's exit status; the worker keeps it.
    global _worker
    _worker = sender


def exit_status() -> object:
    """The exit status the last worker of this process ended with (None: never started)."""
    return getattr(_worker, "exitcode", None)


@worker_shutting_down.connect
def _note_shutdown_request(**_kwargs: object) -> None:
    # Sent by the TERM/INT/QUIT handlers: the worker is meant to go.
    global _stop_requested
    _stop_requested = True


def should_restart(exit_code: object, ran_for_s: float) -> tuple[bool, int]:
    """(restart?, quick restarts so far including this one) for a worker that ended."""
    if exit_code in (0, None) or _stop_requested:
        return False, 0
    quick = int(os.environ.get(RESTARTS_ENV, "0")) if ran_for_s < HEALTHY_AFTER_S else 0
    return quick < MAX_QUICK_RESTARTS, quick + 1


def backoff_s(restarts: int) -> float:
    """Seconds to wait before restart number `restarts` (1, 2, 4, ... capped)."""
    return min(MAX_BACKOFF_S, 2.0 ** max(0, restarts - 1))


def restart_process(restarts: int, exit_code: object) -> None:
    """Wait, then exec this same command line again; returns only if exec fails."""
    delay = backoff_s(restarts)
    log.error("worker ended with status %s without being asked to stop; starting it again in "
              "%.0f s (restart %d)", exit_code, delay, restarts)
    sys.stderr.flush()
    sys.stdout.flush()
    time.sleep(delay)
    # exec skips atexit: write the buffered counters now.
    from tasks.coordination import worker_metrics

    worker_metrics.flush()
    os.environ[RESTARTS_ENV] = str(restarts)
    argv = [sys.executable, *sys.orig_argv[1:]]
    os.execv(sys.executable, argv)
