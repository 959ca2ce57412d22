"""`regnotify send REG_ID`: send the message for a registration's current stage now."""

from __future__ import annotations

import argparse
import uuid

from tasks.commands.database_url import add_database_url_option, use_database_url
from tasks.commands.errors import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("send", help="notify a customer of their registration's current stage now")
    add_database_url_option(p)
    p.add_argument("registration_id", metavar="REG_ID", help="the registration's uuid")
    p.add_argument("--now", action="store_true",
                   help="send even inside the customer's quiet hours (staff override)")
    p.add_argument("--inline", action="store_true",
                   help="claim and dispatch here instead of enqueueing the tick")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Queue a due-now message (the customer's channel preference still applies).

    Without --now it is held like any message inside the customer's quiet hours.
    """
    try:
        registration_id = str(uuid.UUID(args.registration_id))
    except ValueError:
        raise CommandError(f"not a registration id (a uuid): {args.registration_id!r}") from None
    use_database_url(args)
    from db.queue import request_manual_send
    from tasks.database import engine
    from tasks.queue_tick import drain_due, process_notification_queue

    with engine().begin() as conn:
        if not request_manual_send(conn, registration_id, bypass_quiet_hours=args.now):
            raise CommandError(f"no registration {registration_id}")
    if args.inline:
        result = drain_due()
        print(f"queued: {result.dispatched} delivery task(s) for {registration_id}")
    else:
        process_notification_queue.apply_async()
        print(f"queued a message for {registration_id}; the next tick sends it")
    if args.now:
        print("quiet hours do not apply to this message (--now); "
              "a text still held for this registration is replaced by it")
    else:
        print("inside the customer's quiet hours a text waits for the morning; "
              "--now sends it at once")
    return 0
