"""`regnotify tick`: wake the pipeline now (enqueue, or with --inline run it here)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from tasks.commands.database_url import (
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
        from tasks.queue_tick import drain_due

        print(json.dumps(asdict(drain_due())))
        return 0
    if given_database_url(args):
        # Not needed to enqueue, but a worker with this setting would fail: say so now.
        use_database_url(args)
    from tasks.queue_tick import request_tick

    tick = request_tick()
    if tick.coalesced:
        print("a queue run is already waiting to start; this tick joins it")
    else:
        print(f"enqueued process_notification_queue ({tick.task_id})")
    return 0
