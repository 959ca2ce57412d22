"""`regnotify worker`: a Celery worker consuming every regnotify queue."""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

from tasks.cli.database_url import add_database_url_option, use_database_url


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("worker", help="run a Celery worker for the tick, SMS and e-mail queues")
    add_database_url_option(p)
    p.add_argument("-c", "--concurrency", type=int, metavar="N",
                   help="concurrent tasks (default: WORKER_CONCURRENCY, 16)")
    p.add_argument("-Q", "--queues", default=None,
                   help="comma-separated queues (default: notifications,sms,email)")
    p.add_argument("--pool", default=None, choices=["threads", "prefork", "solo", "gevent"],
                   help="worker pool (default: threads)")
    p.add_argument("-l", "--loglevel", default="info")
    p.add_argument("-n", "--hostname", default=None, help="worker node name")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Start the worker in the foreground until it is stopped."""
    from tasks.providers.registry import banner_line

    # Providers first: half-filled credentials are a one-line error (exit 2)
    # whether or not the database is up yet.
    providers = banner_line()
    use_database_url(args)
    print(f"regnotify worker: {providers}", file=sys.stderr, flush=True)
    from tasks.broker.app import ALL_QUEUES, app
    from tasks.log_hygiene import quiet_per_task_lines

    quiet_per_task_lines(args.loglevel)

    argv = ["worker", "-Q", args.queues or ",".join(ALL_QUEUES), "-l", args.loglevel, "-E"]
    if args.concurrency:
        argv += ["-c", str(args.concurrency)]
    if args.pool:
        argv += ["-P", args.pool]
    if args.hostname:
        argv += ["-n", args.hostname]
    from tasks.worker import worker_restart

    if os.environ.get("REGNOTIFY_UNDER_UP") == "1":
        # `up` said once that running as root is for a local stack only.
        from celery.exceptions import SecurityWarning

        warnings.filterwarnings("ignore", category=SecurityWarning)
    started = time.monotonic()
    app.worker_main(argv)
    status = worker_restart.exit_status()
    restart, count = worker_restart.should_restart(status, time.monotonic() - started)
    if restart:
        worker_restart.restart_process(count, status)
    return int(status or 0)
