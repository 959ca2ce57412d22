"""`regnotify tick`: wake the pipeline now (enqueue, or with --inline run it here)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from urllib.parse import urlsplit, urlunsplit

from tasks.cli.database_url import (
    add_database_url_option,
    given_database_url,
    use_database_url,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("tick", help="process due notifications now")
    add_database_url_option(p)
    p.add_argument("--inline", action="store_true",
                   help="claim and dispatch in this process instead of enqueueing a task")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Ask for a queue run (coalesced like every other tick), or run one pass inline."""
    if args.inline:
        use_database_url(args)
        from tasks.worker.queue_tick import drain_due

        print(json.dumps(asdict(drain_due())))
        return 0
    if given_database_url(args):
        # Not needed to enqueue, but a worker with this setting would fail: say so now.
        use_database_url(args)
    broker = require_broker()
    from tasks.broker.wakeup import request_tick

    tick = request_tick()
    if tick.coalesced:
        print(f"a queue run is already waiting to start on {broker}; this tick joins it")
    else:
        print(f"enqueued process_notification_queue ({tick.task_id}) on {broker}")
    return 0


def require_broker() -> str:
    """The configured broker URL (password hidden), or a one-line error.

    Celery's fallback, a Redis on 127.0.0.1:6379, is most likely another
    program's: a tick published there reaches no regnotify worker.
    """
    from tasks.cli.up_here import where_up_runs
    from tasks.exceptions import CommandError
    from tasks.settings import get_settings

    url = get_settings().celery_broker_url
    if not url:
        raise CommandError(f"no broker: {where_up_runs('CELERY_BROKER_URL')}")
    return hide_password(url)


def hide_password(url: str) -> str:
    """A broker URL with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = f"{parts.username}:***" if parts.username else ":***"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{netloc[1]}"))
