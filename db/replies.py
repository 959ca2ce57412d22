"""Customers' replies (migration 16): keep each inbound text once, gather them for staff.

Every text that reaches the inbound webhook is a row of `inbound_messages`,
once per Twilio MessageSid. A reply that is no keyword joins its number's
pending `reply_digests` row (debounced like notification_queue); the queue
run claims due digests and a send task e-mails them to staff.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection

from db.queries import query

#: Twilio's OptOutType (sent with Advanced Opt-Out) -> our keyword kind.
TWILIO_OPT_OUT_TYPES = {"STOP": "opt_out", "START": "opt_in", "HELP": "help"}


@dataclass(frozen=True)
class Inbound:
    """One stored inbound text, as the webhook needs it to answer."""

    id: int
    registration_id: str | None
    keyword: str | None
    #: opt_out, opt_in, help, or None for a reply that is no keyword.
    keyword_kind: str | None
    acknowledged_at: datetime | None
    #: False for a webhook Twilio sent again: stored before, nothing to repeat.
    new: bool


@dataclass(frozen=True)
class ReplySettings:
    """The reply settings of notification_config."""

    staff_email: str | None
    help_reply: str | None
    dealership_phone: str | None
    reply_ack_every: timedelta | None


@dataclass(frozen=True)
class Digest:
    """A digest taken by a send task."""

    id: int
    from_phone: str
    registration_id: str | None
    recipient: str | None
    attempts: int
    first_at: datetime
    #: Held back by the hourly cap: e-mailed inside the hour's one summary.
    in_summary: bool = False


@dataclass(frozen=True)
class QuotedReply:
    """One reply quoted in a digest."""

    body: str
    received_at: datetime
    #: inbound_messages.id: the staff console's link to it.
    id: int | None = None


@dataclass(frozen=True)
class Sender:
    """The registration a reply came from."""

    id: str
    customer_name: str
    vehicle: str
    plate_number: str | None
    stage: str


@dataclass(frozen=True)
class TimelineReply:
    """A reply in a registration's timeline."""

    received_at: datetime
    keyword: str | None
    keyword_kind: str | None
    body: str
    forwarded_status: str | None
    forwarded_at: datetime | None
    forwarded_to: str | None


def lock_number(conn: Connection, from_phone: str) -> None:
    """Serialise the texts of one number until the transaction ends."""
    conn.exec_driver_sql(query("reply_lock_number"), {"from_phone": from_phone})


def record(conn: Connection, *, message_sid: str, from_phone: str, to_phone: str | None,
           body: str, twilio_kind: str | None) -> Inbound | None:
    """Store the text (once per MessageSid) and say what it is.

    None: the MessageSid was seen before and its row is gone (retention pruned
    it), so this is a replay of an old request: there is nothing to do.
    """
    params = {"message_sid": message_sid, "from_phone": from_phone, "to_phone": to_phone,
              "body": body, "twilio_kind": twilio_kind}
    row = conn.exec_driver_sql(query("reply_insert"), params).first()
    new = row is not None
    if row is None:
        row = conn.exec_driver_sql(query("reply_by_sid"), {"message_sid": message_sid}).first()
        if row is None:
            return None
    return Inbound(int(row.id), None if row.registration_id is None else str(row.registration_id),
                   row.keyword, row.keyword_kind, row.acknowledged_at, new)


def settings(conn: Connection) -> ReplySettings:
    """staff_email, help_reply, dealership_phone and reply_ack_every."""
    row = conn.exec_driver_sql(query("reply_settings")).one()
    return ReplySettings(row.staff_email, row.help_reply, row.dealership_phone,
                         row.reply_ack_every)


def join_digest(conn: Connection, inbound: Inbound, from_phone: str) -> int:
    """Put the reply into its number's pending digest; returns the digest's id."""
    row = conn.exec_driver_sql(query("reply_join_digest"), {
        "id": inbound.id, "from_phone": from_phone, "registration_id": inbound.registration_id,
    }).one()
    return int(row.digest_id)


def acknowledge(conn: Connection, inbound_id: int) -> bool:
    """Whether to answer "passed on" now (and note that it was); at most once per period."""
    return conn.exec_driver_sql(query("reply_acknowledge"), {"id": inbound_id}).first() is not None


def claim_digests(conn: Connection, *, limit: int, lease_s: float, token: str) -> list[int]:
    """Due digests (and lapsed sends), leased for the send task that carries `token`.

    New digests only up to notification_config.staff_digest_hourly_cap e-mails
    an hour; call claim_summary next, in the same transaction, for the rest.
    """
    conn.exec_driver_sql(query("reply_digests_claim_lock"))
    rows = conn.exec_driver_sql(query("reply_digests_claim"),
                                {"limit": limit, "lease_s": lease_s, "token": token}).all()
    return [int(r.id) for r in rows]


def claim_summary(conn: Connection, *, lease_s: float, token: str) -> list[int]:
    """The due digests the hourly cap held back, for ONE summary e-mail (at most one an hour).

    Within the hour after a summary they wait, due again when the next may go.
    """
    conn.exec_driver_sql(query("reply_digests_claim_lock"))
    rows = conn.exec_driver_sql(query("reply_summary_claim"),
                                {"lease_s": lease_s, "token": token}).all()
    conn.exec_driver_sql(query("reply_summary_defer"))
    return [int(r.id) for r in rows]


def seconds_until_next_digest(conn: Connection) -> float | None:
    """Seconds until the next digest is due or its lease lapses (negative: overdue), or None."""
    value = conn.exec_driver_sql(query("reply_digests_next_due")).scalar()
    return None if value is None else float(value)


def take(conn: Connection, ids: Sequence[int], *, token: str, lease_s: float) -> list[Digest]:
    """The named digests still sending under this claim's token, leased again."""
    rows = conn.exec_driver_sql(query("reply_digests_take"),
                                {"ids": list(ids), "token": token, "lease_s": lease_s}).all()
    return [Digest(int(r.id), r.from_phone, None if r.registration_id is None
                   else str(r.registration_id), r.recipient, int(r.attempts), r.first_at,
                   bool(r.in_summary))
            for r in sorted(rows, key=lambda r: r.id)]


def extend(conn: Connection, ids: Sequence[int], *, lease_s: float, code: str | None = None,
           message: str | None = None) -> None:
    """Hold the digests through a wait (and note the error that caused it)."""
    conn.exec_driver_sql(query("reply_digests_extend"), {
        "ids": list(ids), "lease_s": lease_s, "code": code, "message": message})


def messages(conn: Connection, ids: Sequence[int]) -> dict[int, list[QuotedReply]]:
    """The replies of each digest, oldest first."""
    found: dict[int, list[QuotedReply]] = {}
    for r in conn.exec_driver_sql(query("reply_digest_messages"), {"ids": list(ids)}):
        found.setdefault(int(r.digest_id), []).append(QuotedReply(r.body, r.received_at, r.id))
    return found


def sender(conn: Connection, registration_id: str) -> Sender | None:
    """The registration a digest names."""
    r = conn.exec_driver_sql(query("reply_registration"), {"id": registration_id}).first()
    if r is None:
        return None
    vehicle = " ".join(str(v) for v in (r.vehicle_year, r.vehicle_make, r.vehicle_model) if v)
    return Sender(str(r.id), r.customer_name, vehicle, r.plate_number,
                  r.stage_label or r.current_stage)


def mark_sent(conn: Connection, digest_id: int, message_id: str) -> None:
    conn.exec_driver_sql(query("reply_digest_sent"), {"id": digest_id, "message_id": message_id})


def mark_failed(conn: Connection, digest_id: int, code: str, message: str) -> None:
    conn.exec_driver_sql(query("reply_digest_failed"),
                         {"id": digest_id, "code": code, "message": message})


def timeline(conn: Connection, registration_id: str) -> list[TimelineReply]:
    """The registration's replies, oldest first, with what became of the e-mail to staff."""
    rows = conn.exec_driver_sql(query("reply_timeline"),
                                {"registration_id": registration_id}).all()
    return [TimelineReply(r.received_at, r.keyword, r.keyword_kind, r.body, r.forwarded_status,
                          r.forwarded_at, r.forwarded_to) for r in rows]
