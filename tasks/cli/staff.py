"""`regnotify staff add EMAIL --name NAME`, `staff remove EMAIL`, `staff list`: who may sign
in to the staff console (/staff). A removed member's session stops at its next request."""

from __future__ import annotations

import argparse
import re

from tasks.cli.database_url import add_database_url_option, database
from tasks.cli.printing import console, print_json, print_rows, when
from tasks.exceptions import CommandError

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand and its three actions."""
    p = sub.add_parser("staff", help="add, remove or list the staff console's members",
                       description="Who may sign in to the staff console at /staff.")
    actions = p.add_subparsers(dest="staff_action", metavar="add|remove|list", required=True)
    add = actions.add_parser("add", help="add a member (or make a removed one active again)")
    add_database_url_option(add)
    add.add_argument("email", metavar="EMAIL")
    add.add_argument("--name", required=True, help="the name the console shows")
    add.set_defaults(handler=run_add)
    remove = actions.add_parser("remove", help="remove a member: their session stops at once")
    add_database_url_option(remove)
    remove.add_argument("email", metavar="EMAIL")
    remove.set_defaults(handler=run_remove)
    listing = actions.add_parser("list", help="list members, active first")
    add_database_url_option(listing)
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(handler=run_list)


def _email(value: str) -> str:
    email = value.strip().lower()
    if not _EMAIL.match(email):
        raise CommandError(f"not an e-mail address (like name@dealership.com): {value!r}")
    return email


def run_add(args: argparse.Namespace) -> int:
    email, name = _email(args.email), args.name.strip()
    if not name:
        raise CommandError("--name must not be empty: the console shows it")
    from db.queries import query

    with database(args) as conn:
        row = conn.exec_driver_sql(query("staff_add"), {"email": email, "name": name}).one()
    verb = "added" if row.created else "is a member again (name updated)"
    print(f"{row.email} {verb}: {row.name} may sign in at /staff")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    email = _email(args.email)
    from db.queries import query

    with database(args) as conn:
        row = conn.exec_driver_sql(query("staff_remove"), {"email": email}).first()
    if row is None:
        raise CommandError(f"{email} is not an active staff member (see `regnotify staff list`)")
    print(f"{email} removed: a console session regnotify signed (e-mailed code) stops at its "
          "next request. With Supabase Auth, their account keeps app_metadata.role = admin "
          "in Supabase: the console shuts them out, but their Supabase tokens stay admin in "
          "the API until you remove that role in Supabase (and their last token expires, "
          "within the hour)")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from db.queries import query

    with database(args) as conn:
        rows = [dict(r) for r in conn.exec_driver_sql(query("staff_list")).mappings()]
    if args.json:
        print_json({"members": rows})
        return 0
    out = console()
    if not rows:
        out.print("No staff members yet: `regnotify staff add EMAIL --name NAME`.")
        return 0
    print_rows(out, ("email", "name", "active", "added", "removed"),
               [(r["email"], r["name"], "yes" if r["active"] else "no", when(r["created_at"]),
                 when(r["removed_at"]) if r["removed_at"] else "") for r in rows])
    return 0
