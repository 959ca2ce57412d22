"""The e-mail that tells staff what a customer wrote back, and the answers the customer gets."""

from __future__ import annotations

import hashlib
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


def summary_key(digest_ids: Sequence[int]) -> str:
    """The Idempotency-Key of an hour's summary: the same for the same digests."""
    members = ",".join(str(i) for i in sorted(digest_ids))
    return "regnotify-reply-summary-" + hashlib.sha256(members.encode()).hexdigest()[:32]


def summary_email(parts: Sequence[tuple[Digest, Sender | None, Sequence[QuotedReply]]],
                  dealership: str) -> Email:
    """One e-mail with every digest the hourly cap held back (staff_digest_hourly_cap)."""
    recipient = parts[0][0].recipient
    assert recipient is not None
    texts = sum(len(quoted) for _, _, quoted in parts)
    intro = (f"More customers of {dealership} wrote back than the hourly limit of e-mails "
             f"to staff allows (notification_config.staff_digest_hourly_cap): here are the "
             f"other {texts} texts from {len(parts)} numbers, all of them.")
    text_lines = [intro, ""]
    html = [f"<p>{escape(intro)}</p>"]
    for digest, sender, quoted in parts:
        about = _about(digest, sender)
        stamped = [(f"{r.received_at:%Y-%m-%d %H:%M %Z}", r.body) for r in quoted]
        text_lines += ["---", *about, "",
                       *[f"{at}:\n> " + body.replace("\n", "\n> ") for at, body in stamped], ""]
        html += ["<hr><p>" + "<br>".join(escape(line) for line in about) + "</p>",
                 *[f"<p><small>{escape(at)}</small></p><blockquote>"
                   f"{escape(body).replace(chr(10), '<br>')}</blockquote>"
                   for at, body in stamped]]
    ending = "Answer them from the dealership's phone; replies to this e-mail reach nobody."
    text_lines.append(ending)
    html.append(f"<p>{escape(ending)}</p>")
    ids = [digest.id for digest, _, _ in parts]
    return Email(to=recipient, subject=f"{texts} more customer texts from {len(parts)} numbers",
                 html="".join(html), text="\n".join(text_lines), idempotency_key=summary_key(ids),
                 tags=(("reply_summary", str(min(ids))),))
