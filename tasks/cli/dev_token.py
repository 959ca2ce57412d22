"""`regnotify dev-token --customer PHONE | --staff EMAIL`: an API token for a local stack.

Prints a bearer token the local relay's `/api` accepts, signed with the
SESSION_SECRET `regnotify up` keeps in `.regnotify/secrets.json` (and
publishes in `.regnotify/up.env`): a customer's, as the portal's sign-in
makes it, or a staff member's (the admin claim). Only for a stack on this
machine: any setting that points somewhere else (a relay or database that is
not on loopback, Supabase Auth, the real Twilio or Resend) is a refusal, so
the command cannot mint tokens for a deployment by accident.

The token alone goes to stdout (`TOKEN=$(regnotify dev-token ...)`); how to
use it goes to stderr.
"""

from __future__ import annotations

import argparse
import re
import sys
from urllib.parse import urlsplit

from tasks.cli.relay import is_loopback
from tasks.exceptions import CommandError, ProviderConfigError
from tasks.settings import Settings

DEFAULT_TTL_S = 3600
MAX_TTL_S = 24 * 3600
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser(
        "dev-token",
        help="print an API token for a customer or a staff member (local stack only)",
        description="Print a bearer token the local relay's /api accepts, signed with the "
        "SESSION_SECRET `regnotify up` keeps. Refused unless every setting points at this "
        "machine.")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer", metavar="PHONE",
                     help="a customer's mobile number: the token sees that number's "
                          "registrations")
    who.add_argument("--staff", metavar="EMAIL", help="a staff member's e-mail: an admin token")
    p.add_argument("--ttl", type=int, default=DEFAULT_TTL_S, metavar="SECONDS",
                   help=f"lifetime (default {DEFAULT_TTL_S}, at most {MAX_TTL_S})")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check the stack is local, mint, print."""
    from tasks.settings import get_settings

    settings = get_settings()
    if not 1 <= args.ttl <= MAX_TTL_S:
        raise CommandError(f"--ttl must be between 1 and {MAX_TTL_S} seconds")
    reason = not_local(settings)
    if reason is not None:
        raise CommandError(f"refused: {reason}; dev-token prints tokens for a local stack "
                           "only (`regnotify up`)")
    if settings.session_secret is None or not settings.session_secret.get_secret_value():
        raise CommandError(
            "SESSION_SECRET is not set: run this in the folder where `regnotify up` runs (it "
            "keeps one in .regnotify/secrets.json), or set SESSION_SECRET as the relay has it")
    if args.customer is not None:
        token = customer_token(settings, args.customer, args.ttl)
        scope = "this number's registrations: GET /api/me/registrations"
    else:
        token = staff_token(settings, args.staff, args.ttl)
        scope = "admin: GET /api/registrations/{id}/timeline, POST .../notify"
    relay = (settings.relay_public_url
             or (settings.portal_url or "").removesuffix("/portal")
             or "http://127.0.0.1:8000")
    print(token)
    print(f"regnotify dev-token: valid {args.ttl} s, {scope}; e.g. curl -H "
          f"\"Authorization: Bearer $TOKEN\" {relay}/api/me/registrations", file=sys.stderr)
    return 0


def customer_token(settings: Settings, typed: str, ttl_s: int) -> str:
    """A customer's token, made by the portal's own minting (tasks/auth/api_tokens.py)."""
    from db import customer_subjects
    from tasks.auth.api_tokens import issue_session_token
    from tasks.cli.database_url import database
    from tasks.portal.i18n import Words
    from tasks.portal.phone import PhoneProblem, read_phone

    phone = read_phone(typed)
    if isinstance(phone, PhoneProblem):
        words = Words("en")("signin." + phone.key, **phone.values)
        raise CommandError(f"--customer {typed!r}: {words}")
    # The same random subject the portal's sign-in gives this number.
    with database(argparse.Namespace(database_url=None)) as conn:
        subject = customer_subjects.subject_for(conn, phone)
    return issue_session_token(settings, phone=phone, subject=subject, ttl_s=ttl_s)


def staff_token(settings: Settings, email: str, ttl_s: int) -> str:
    """A staff member's token, minted as the staff console's sign-in mints it.

    Admin only while the address is an active member: public.jwt_is_admin()
    checks that at every statement, so the command refuses others up front.
    """
    from tasks.staff.signin import issue_staff_token

    address = email.strip().lower()
    if not _EMAIL.match(address):
        raise CommandError(f"--staff {email!r} is not an e-mail address")
    _check_staff_member(address)
    return issue_staff_token(settings, address, ttl_s=ttl_s)


def _check_staff_member(address: str) -> None:
    """Where the database keeps staff (staff_members), the address must be an active one."""
    from sqlalchemy import text

    from tasks.cli.database_url import database

    with database(argparse.Namespace(database_url=None)) as conn:
        if conn.execute(text("SELECT to_regclass('public.staff_members')")).scalar() is None:
            return
        active = conn.execute(text(
            "SELECT 1 FROM public.staff_members WHERE lower(email) = :email AND active"),
            {"email": address}).first()
    if active is None:
        raise CommandError(f"{address} is not an active staff member: add them with "
                           f"`regnotify staff add {address} --name NAME`")


def not_local(settings: Settings) -> str | None:
    """Why these settings are not a local stack's, or None when they are."""
    for name, url in (("RELAY_PUBLIC_URL", settings.relay_public_url),
                      ("PORTAL_URL", settings.portal_url),
                      ("SUPABASE_URL", settings.supabase_url)):
        if url and not _loopback_host(urlsplit(url).hostname):
            return f"{name} is {urlsplit(url).hostname}, not this machine"
    if settings.database_url and not _database_is_local(settings.database_url):
        return "DATABASE_URL is a server on another machine"
    try:
        sms, email = settings.sms_provider_name(), settings.email_provider_name()
    except ProviderConfigError as exc:
        return str(exc)
    if sms == "twilio" and not _loopback_host(urlsplit(settings.twilio_api_base_url or
                                                        "https://api.twilio.com").hostname):
        return "texts go through the real Twilio (production settings)"
    if email == "resend" and not _loopback_host(urlsplit(settings.resend_api_base_url or
                                                         "https://api.resend.com").hostname):
        return "e-mail goes through the real Resend (production settings)"
    return None


def _loopback_host(host: str | None) -> bool:
    return host is not None and is_loopback(host)


def _database_is_local(url: str) -> bool:
    """A loopback host, or a Unix socket (no host, or a host that is a folder)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    host = parsed.host or str(parsed.query.get("host") or "")
    return not host or host.startswith("/") or _loopback_host(host)
