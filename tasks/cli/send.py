"""`regnotify send REG_ID`: send the message for a registration's current stage now."""

from __future__ import annotations

import argparse

from tasks.cli.database_url import (
    add_database_url_option,
    parse_registration_id,
    use_database_url,
)
from tasks.exceptions import CommandError


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
    registration_id = parse_registration_id(args.registration_id)
    use_database_url(args)
    from db import front_door
    from db.errors import RegistrationNotFound
    from tasks.broker.wakeup import request_tick
    from tasks.database import engine
    from tasks.worker.queue_tick import drain_due

    # request_notification decides and queues (the same function the API and
    # PostgREST call); nothing is written when it answers queued: false.
    with engine().begin() as conn:
        front_door.act_as_backend(conn)
        try:
            answer = front_door.request_notification(conn, registration_id,
                                                     bypass_quiet_hours=args.now)
        except RegistrationNotFound:
            raise CommandError(f"no registration {registration_id}") from None
    if not answer["queued"]:
        raise CommandError(f"nothing will be sent to {registration_id}: {answer['detail']}")
    channels = answer["channels"]
    for skipped in answer["skipped"]:
        print(f"note: {skipped['detail']}")
    by = " and ".join("SMS" if c == "sms" else "e-mail" for c in channels)
    if args.inline:
        result = drain_due()
        print(f"queued: {result.dispatched} delivery task(s) for {registration_id} ({by})")
    else:
        tick = request_tick()
        joined = " (joins a queue run already waiting)" if tick.coalesced else ""
        print(f"queued a message for {registration_id} by {by}; "
              f"the next queue run sends it{joined}")
    if args.now:
        print("quiet hours do not apply to this message (--now); "
              "a text still held for this registration is replaced by it")
    elif answer.get("held_until_local"):
        print(f"inside the customer's quiet hours: the text waits until "
              f"{answer['held_until_local']} {answer['time_zone']}; --now sends it at once")
    return 0
