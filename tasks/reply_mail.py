"""The e-mail that tells staff what a customer wrote back, and the answers the customer gets."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from db.replies import Digest, QuotedReply, Sender
from tasks.providers.base import Email


def digest_key(digest_id: int) -> str:
    """The Resend Idempotency-Key of one digest: the same on every retry."""
    return f"regnotify-reply-digest-{digest_id}"


def _subject(digest: Digest, sender: Sender | None, count: int) -> str:
    texts = "a text" if count == 1 else f"{count} texts"
    if sender is None:
        return f"{texts.capitalize()} from an unknown number, {digest.from_phone}"
    return f"{texts.capitalize()} from {sender.customer_name} ({digest.from_phone})"


def _about(digest: Digest, sender: Sender | None) -> list[str]:
    if sender is None:
        return [f"{digest.from_phone} is not the phone of any registration: an unknown "
                "number. Nobody was named; check who it is before answering."]
    lines = [f"Customer: {sender.customer_name}, {digest.from_phone}",
             f"Registration: {sender.id}"]
    if sender.vehicle:
        lines.append(f"Vehicle: {sender.vehicle}"
                     + (f", plate {sender.plate_number}" if sender.plate_number else ""))
    lines.append(f"Stage: {sender.stage}")
    return lines


def digest_email(digest: Digest, sender: Sender | None, replies: Sequence[QuotedReply],
                 dealership: str, console_url: str | None = None) -> Email:
    """One e-mail for every reply of the digest, quoted in the order they came; with
    `console_url` (the staff console's address) a link to them there."""
    assert digest.recipient is not None
    about = _about(digest, sender)
    first = next((r.id for r in replies if r.id is not None), None)
    if console_url and first is not None:
        about.append(f"In the staff console: {console_url}/replies?show=all#reply-{first}")
    quoted = [(f"{r.received_at:%Y-%m-%d %H:%M %Z}", r.body) for r in replies]
    text = "\n".join([
        f"A customer of {dealership} wrote back to a notification text.", "",
        *about, "",
        *[f"{at}:\n> " + body.replace("\n", "\n> ") for at, body in quoted],
        "", "Answer them from the dealership's phone; replies to this e-mail reach nobody.",
    ])
    html = "".join([
        f"<p>A customer of {escape(dealership)} wrote back to a notification text.</p>",
        "<p>" + "<br>".join(escape(line) for line in about) + "</p>",
        *[f"<p><small>{escape(at)}</small></p><blockquote>"
          f"{escape(body).replace(chr(10), '<br>')}</blockquote>" for at, body in quoted],
        "<p>Answer them from the dealership's phone; replies to this e-mail reach nobody.</p>",
    ])
    tags = [("reply_digest", str(digest.id))]
    if sender is not None:
        tags.append(("registration", sender.id))
    return Email(to=digest.recipient, subject=_subject(digest, sender, len(replies)), html=html,
                 text=text, idempotency_key=digest_key(digest.id), tags=tuple(tags))


def passed_on(dealership: str, phone: str | None) -> str:
    """What a customer hears back (at most once a day): a person will read their text."""
    reach = f" To reach us: {phone}." if phone else ""
    return f"{dealership}: thanks, we passed your message on to our team.{reach}"
