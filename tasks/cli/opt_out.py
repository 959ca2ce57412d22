"""`regnotify opt-out PHONE [--undo]`: staff record (or lift) an SMS opt-out for a number.

The same path as a Twilio 21610 and an inbound STOP (db.deliveries.set_sms_opt_out):
the number's `sms_opt_outs` row is the whole effect; preferences stay as they are.
"""

from __future__ import annotations

import argparse
import re

from tasks.cli.database_url import add_database_url_option, use_database_url
from tasks.exceptions import CommandError
from tasks.masking import mask_phone

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("opt-out", help="stop (or with --undo, allow again) SMS to a phone number")
    add_database_url_option(p)
    p.add_argument("phone", metavar="PHONE", help="the number in E.164 form, e.g. +15551230001")
    p.add_argument("--undo", action="store_true",
                   help="lift the opt-out: the number may be texted again")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Record the opt-out (or opt-in) with source `staff`."""
    phone = args.phone.strip()
    if not _E164.match(phone):
        raise CommandError(f"not an E.164 phone number (like +15551230001): {phone!r}")
    use_database_url(args)
    from db import deliveries
    from tasks.database import engine

    with engine().begin() as conn:
        deliveries.set_sms_opt_out(conn, phone, opted_out=not args.undo, source="staff")
    if args.undo:
        print(f"{mask_phone(phone)} may receive SMS again (preferences unchanged)")
    else:
        print(f"{mask_phone(phone)} opted out of SMS; e-mail goes on as each customer chose")
    return 0
