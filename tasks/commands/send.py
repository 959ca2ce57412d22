"""`regnotify send REG_ID`: send the message for a registration's current stage now."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tasks.commands.database_url import (
    add_database_url_option,
    parse_registration_id,
    use_database_url,
)
from tasks.exceptions import CommandError

if TYPE_CHECKING:
    from db.status import RegistrationDetail


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


def reachable(reg: RegistrationDetail) -> tuple[list[str], list[str]]:
    """(the channels a message will go by, why each other chosen channel will not).

    The same decisions the claim makes, said before queueing anything.
    """
    if reg.notification_pref == "none":
        return [], ["the customer chose no messages (notification_pref = none)"]
    chosen = ["sms", "email"] if reg.notification_pref == "both" else [reg.notification_pref]
    channels: list[str] = []
    why_not: list[str] = []
    for channel in chosen:
        if channel == "sms" and not reg.customer_phone:
            why_not.append("no SMS: no phone number on file")
        elif channel == "sms" and reg.sms_opted_out:
            why_not.append("no SMS: the phone number opted out (it can text START)")
        elif channel == "email" and not reg.customer_email:
            why_not.append("no e-mail: no address on file")
        else:
            channels.append(channel)
    return channels, why_not


def run(args: argparse.Namespace) -> int:
    """Queue a due-now message (the customer's channel preference still applies).

    Without --now it is held like any message inside the customer's quiet hours.
    """
    registration_id = parse_registration_id(args.registration_id)
    use_database_url(args)
    from db import status as status_db
    from db.queue import request_manual_send, sms_quiet_until
    from tasks.database import engine
    from tasks.queue_tick import drain_due, request_tick

    with engine().begin() as conn:
        reg = status_db.registration(conn, registration_id)
        if reg is None:
            raise CommandError(f"no registration {registration_id}")
        channels, why_not = reachable(reg)
        if not channels:
            raise CommandError(f"nothing will be sent to {registration_id}: "
                               + "; ".join(why_not))
        request_manual_send(conn, registration_id, bypass_quiet_hours=args.now)
        quiet_until = (sms_quiet_until(conn, registration_id)
                       if "sms" in channels and not args.now else None)
    for reason in why_not:
        print(f"note: {reason}")
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
    elif quiet_until is not None:
        from tasks.commands.printing import when

        print(f"it is the customer's quiet hours: the text waits until {when(quiet_until)}; "
              "--now sends it at once")
    return 0
