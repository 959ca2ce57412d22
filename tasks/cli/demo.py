"""`regnotify demo`: stage changes that show debouncing, silencing and skips, live."""

from __future__ import annotations

import argparse
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from tasks.cli.database_url import add_database_url_option, use_database_url
from tasks.exceptions import CommandError


@dataclass(frozen=True)
class Customer:
    """A demo customer and the changes staff make to their registration."""

    key: str
    name: str
    phone: str | None
    email: str | None
    pref: str
    changes: tuple[tuple[str, bool], ...]  # (stage, silenced)
    story: str


def _customers(tag: str) -> list[Customer]:
    return [
        Customer("burst", f"Ana Burst {tag}", "+15550100001", "ana@example.com", "both",
                 (("documents_collected", False), ("submitted_to_dmv", False),
                  ("dmv_processing", False)),
                 "three changes in a row: one text and one e-mail naming the last"),
        Customer("silenced", f"Ben Silenced {tag}", "+15550100002", "ben@example.com", "sms",
                 (("documents_collected", True),), "staff silenced this change"),
        Customer("flip", f"Cleo Flip {tag}", "+15550100003", "cleo@example.com", "email",
                 (("documents_collected", False), ("sale_complete", False)),
                 "changed and changed back: nothing to say"),
        Customer("none", f"Dev Quiet {tag}", "+15550100004", "dev@example.com", "none",
                 (("sticker_ready", False),), "chose no messages"),
        Customer("email-only", f"Eve Emailonly {tag}", None, "eve@example.com", "both",
                 (("sticker_ready", False),), "no phone on file: e-mail only"),
    ]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("demo", help="create demo registrations and watch their messages go out")
    add_database_url_option(p)
    p.add_argument("--window", type=float, default=5.0,
                   help="debounce window for the demo, seconds (default 5; restored after)")
    p.add_argument("--timeout", type=float, default=90.0, help="give up after this many seconds")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo against the configured database and broker."""
    if args.window <= 0 or args.window > 600:
        raise CommandError("--window must be between 0 and 600 seconds")
    use_database_url(args)
    from rich.live import Live

    from db import demo as demo_db
    from tasks.broker.wakeup import request_tick
    from tasks.cli.printing import console as piped_aware_console
    from tasks.database import engine

    console = piped_aware_console()
    tag = uuid.uuid4().hex[:4]
    customers = _customers(tag)
    eng = engine()
    try:
        with eng.begin() as conn:
            saved = demo_db.get_debounce(conn)
            demo_db.set_debounce(conn, args.window, max(args.window * 4, 60.0))
    except Exception as exc:  # the first contact: say plainly what is wrong
        raise CommandError(f"cannot reach the database ({type(exc).__name__}); "
                           "is `regnotify up` running, or DATABASE_URL set?") from exc
    ids: dict[str, str] = {}
    try:
        with eng.begin() as conn:
            for c in customers:
                ids[c.key] = demo_db.add_registration(
                    conn, name=c.name, phone=c.phone, email=c.email, year=2021,
                    make="Toyota", model="Corolla", pref=c.pref)
        console.print(f"[bold]regnotify demo[/] — debounce window {args.window:g}s")
        for c in customers:
            console.print(f"  {c.name}: {c.story}")
        for step in range(max(len(c.changes) for c in customers)):
            with eng.begin() as conn:
                for c in customers:
                    if step < len(c.changes):
                        stage, silenced = c.changes[step]
                        demo_db.change_stage(conn, ids[c.key], stage, silence=silenced)
            time.sleep(0.5)
        deadline = time.monotonic() + args.window + args.timeout
        rows: list[dict] = []
        with Live(console=console, refresh_per_second=4) as live:
            while time.monotonic() < deadline:
                # Coalesced: cheap to ask often, and the demo then also works
                # where nothing else ticks (no pg_cron, no relay).
                request_tick()
                with eng.begin() as conn:
                    rows = demo_db.deliveries(conn, list(ids.values()))
                    waiting = demo_db.pending(conn, list(ids.values()))
                live.update(_table(rows, waiting))
                if waiting == 0 and rows and all(
                        r["status"] not in ("queued", "sending") for r in rows):
                    break
                time.sleep(0.5)
    finally:
        with eng.begin() as conn:
            demo_db.set_debounce(conn, *saved)
    # The summary's title must not sit on the live table's border: off a
    # terminal, Live leaves its last line unterminated.
    if not console.is_terminal:
        console.print()
    console.print()
    console.print(_summary(customers, rows))
    console.print("See one timeline with: regnotify status " + ids["burst"])
    console.print(_portal_hint(customers[0]))
    unfinished = [r for r in rows if r["status"] in ("queued", "sending")]
    if unfinished or len(rows) < 2 * len(customers):
        raise CommandError("not every message settled in time: is a worker running "
                           "(`regnotify up` or `regnotify worker`)?", exit_code=1)
    return 0


def _portal_hint(customer: Customer) -> str:
    """Where a person follows the first customer's registration, and how to sign in."""
    from tasks.masking import mask_phone
    from tasks.settings import get_settings

    portal = get_settings().portal_url
    if not portal:
        return "Set PORTAL_URL (or RELAY_PUBLIC_URL) to follow a registration on the customer page"
    return (f"Follow {customer.name}'s registration at {portal}: sign in with "
            f"{customer.phone}, then type the code the relay prints under `regnotify up` "
            f"(`sign-in code for {mask_phone(customer.phone)}: ...`)")


def _table(rows: list[dict], waiting: int):
    from rich.table import Table

    table = Table(title=f"deliveries ({waiting} change(s) still in their debounce window)")
    for col in ("customer", "channel", "status", "why / id", "stage", "merged", "message"):
        table.add_column(col)
    for r in rows:
        why = r["skip_reason"] or r["provider_message_id"] or ""
        text = (r["subject"] or r["body"] or "").splitlines()[0][:60] if (
            r["subject"] or r["body"]) else ""
        table.add_row(r["customer_name"], r["channel"], r["status"], why, r["new_stage"],
                      str(r["change_count"]), text)
    return table


def _summary(customers: list[Customer], rows: list[dict]):
    from rich.table import Table

    sent = [r for r in rows if r["status"] in ("sent", "delivered")]
    skipped = Counter(r["skip_reason"] for r in rows if r["status"] == "skipped")
    failed = [r for r in rows if r["status"] in ("failed", "undelivered", "bounced")]
    merged = sum(len(c.changes) for c in customers)
    table = Table(title="summary", title_justify="left", show_header=False)
    table.add_row("stage changes made", str(merged))
    table.add_row("messages sent", f"{len(sent)} (sms {sum(r['channel'] == 'sms' for r in sent)}, "
                  f"email {sum(r['channel'] == 'email' for r in sent)})")
    for reason, count in sorted(skipped.items()):
        table.add_row(f"skipped: {reason}", str(count))
    table.add_row("failed", str(len(failed)))
    return table
