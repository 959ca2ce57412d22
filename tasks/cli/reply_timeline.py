"""The replies block of `regnotify status REG_ID`: what the customer wrote back.

Read through the view registration_replies (migration 16), the same rows a
customer's own timeline shows them through row-level security.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from tasks.cli.printing import when
from tasks.masking import mask_recipient

if TYPE_CHECKING:
    from rich.console import Console

    from db.replies import TimelineReply

#: What a keyword did.
KEYWORD_EFFECTS = {
    "opt_out": "opted the number out of texts",
    "opt_in": "let the number receive texts again",
    "help": "asked for help",
}


def _forwarded(reply: TimelineReply) -> str:
    if reply.keyword_kind is not None:
        return KEYWORD_EFFECTS.get(reply.keyword_kind, reply.keyword_kind)
    to = mask_recipient("email", reply.forwarded_to) if reply.forwarded_to else "staff"
    if reply.forwarded_status == "sent":
        return f"e-mailed to {to} at {when(reply.forwarded_at)}"
    if reply.forwarded_status in ("pending", "sending"):
        return "to be e-mailed to staff"
    if reply.forwarded_status == "failed":
        return f"the e-mail to {to} failed (see regnotify_reply_digests in /metrics)"
    return "kept (notification_config.staff_email is not set: nobody was e-mailed)"


def describe(reply: TimelineReply) -> str:
    """`2026-01-02 10:00:00 UTC  "When can I pick up my plates?"  e-mailed to s***@...`."""
    quoted = reply.body.replace("\n", " ")
    if len(quoted) > 200:
        quoted = quoted[:199] + "…"
    return f'{when(reply.received_at)}  "{quoted}"  {_forwarded(reply)}'


def replies_json(found: Sequence[TimelineReply]) -> list[dict[str, Any]]:
    """The replies as JSON-ready dicts (the staff address masked)."""
    return [{**asdict(r), "forwarded_to": mask_recipient("email", r.forwarded_to)
             if r.forwarded_to else None} for r in found]


def print_replies(out: Console, found: Sequence[TimelineReply]) -> None:
    """A 'Replies from the customer' block, or nothing when they never wrote back."""
    from rich.text import Text

    if not found:
        return
    out.print("Replies from the customer:")
    for reply in found:
        out.print(Text("  " + describe(reply)))
    out.print()
