"""One delivery row (registration_notifications) through its send, retries and sweep."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection

from db import direct
from db.queries import query
from db.queue import DeliveryRef


@dataclass(frozen=True)
class Delivery:
    """A delivery with what its send needs: row state plus the registration's current contact."""

    id: int
    registration_id: str
    channel: str
    status: str
    recipient: str | None
    old_stage: str | None
    new_stage: str
    attempts: int
    outcome_unknown: bool
    last_attempt_at: datetime | None
    body: str | None
    subject: str | None
    provider: str | None
    provider_message_id: str | None
    email_batch_id: str | None
    fallback_for: int | None
    leased: bool
    retry_pending: bool
    notification_pref: str
    customer_name: str | None
    customer_phone: str | None
    customer_email: str | None
    vin: str | None
    vehicle_year: int | None
    make: str | None
    model: str | None
    plate_number: str | None
    new_stage_label: str | None
    old_stage_label: str | None
    sms_opted_out: bool
    #: The language the message goes in: the registration's, else the
    #: configured default (the stage labels above are in it).
    language: str
    #: It waited for the end of the customer's quiet hours.
    was_held: bool
    #: It stands in for a message on the other channel that failed for good.
    is_fallback: bool
    #: Why it must not go out after all, as the consent rule in SQL
    #: (public.regnotify_skip_reason) answers at the load; None: it may.
    skip_reason: str | None

    @property
    def in_flight(self) -> bool:
        """Still queued or sending: a send task has work to do."""
        return self.status in ("queued", "sending")

    @property
    def contact(self) -> str | None:
        """The registration's current address for this channel."""
        return self.customer_phone if self.channel == "sms" else self.customer_email


@dataclass(frozen=True)
class Claim:
    """The lease a send task holds while it calls the provider."""

    #: Attempts ever made, this one included (the timeline shows it).
    attempts: int
    #: Attempts since the delivery was last re-driven: what the retry budget counts.
    attempts_this_run: int
    attempted_at: datetime
    #: Before this claim: the last attempt may have been accepted, and when
    #: it started (read under the claim's lock, so never stale).
    was_unknown: bool = False
    previous_attempt_at: datetime | None = None


@dataclass(frozen=True)
class Refused:
    """A claim that took nothing because the delivery no longer matches the registration.

    `skip_reason` set: the claim ended it `skipped` (preference, no_contact,
    opted_out). None: its address changed since the message was rendered.
    """

    skip_reason: str | None
    #: Inside the customer's quiet hours at the claim: parked until then.
    quiet_until: datetime | None = None


def _delivery(row: Any) -> Delivery:
    data: dict[str, Any] = dict(row)
    data["registration_id"] = str(data["registration_id"])
    return Delivery(**data)


def load(conn: Connection, delivery_id: int) -> Delivery | None:
    """The delivery and its registration, or None when either is gone."""
    found = direct.fetch_sql(conn, _load_one_sql(), {"id": delivery_id})
    return _delivery(found[0]) if found else None


@cache
def _load_one_sql() -> str:
    """load_deliveries for a single id: `n.id =` the id, not `= ANY` of an array.

    With `= ANY(array)` PostgreSQL plans the prepared statement afresh on
    every run (a generic plan must allow for many ids, so it never looks
    cheaper than a custom one for a single id): 0.35 ms of server CPU per
    send, where the single-id form settles on its generic plan after five
    runs and costs 0.07. Derived here rather than copied, so the two
    cannot drift apart.
    """
    many = query("load_deliveries")
    one = many.replace("WHERE n.id = ANY(%(ids)s)", "WHERE n.id = %(id)s")
    if one == many:
        raise RuntimeError("load_deliveries no longer reads `WHERE n.id = ANY(%(ids)s)`")
    return one


def load_many(conn: Connection, delivery_ids: list[int]) -> list[Delivery]:
    """The deliveries (with their registrations) that still exist, by id."""
    return [_delivery(r) for r in direct.fetch(conn, "load_deliveries", {"ids": delivery_ids})]


def claim(
    conn: Connection,
    delivery_id: int,
    *,
    lease_s: float,
    recipient: str,
    provider: str,
    body: str,
    subject: str | None,
    template_used: str,
    language: str,
) -> Claim | Refused | None:
    """Take the lease and count an attempt, if consent still holds.

    Refused: skipped in the claim (or its address changed since the render);
    None: another worker holds it or it moved on.
    """
    rows = direct.fetch(
        conn,
        "claim_delivery",
        {
            "id": delivery_id,
            "lease_s": lease_s,
            "recipient": recipient,
            "provider": provider,
            "body": body,
            "subject": subject,
            "template_used": template_used,
            "language": language,
        },
    )
    if not rows:
        return None
    row = rows[0]
    if row["attempts"] is None:
        return Refused(row["skip_reason"], row["quiet_until"])
    return Claim(int(row["attempts"]), int(row["attempts_this_run"]), row["last_attempt_at"],
                 bool(row["was_unknown"]), row["previous_attempt_at"])


def recorded_elsewhere(conn: Connection, delivery_id: int, provider_message_id: str) -> bool:
    """True when a delivery other than this one already records the provider's message."""
    rows = direct.fetch(conn, "message_recorded_elsewhere",
                        {"id": delivery_id, "provider_message_id": provider_message_id})
    return bool(rows and rows[0]["recorded"])


def mark_sent(conn: Connection, delivery_id: int, provider_message_id: str) -> None:
    """Record the provider's acceptance."""
    direct.run(conn, "mark_sent", {"id": delivery_id, "provider_message_id": provider_message_id})


def mark_sent_many(conn: Connection, accepted: dict[int, str]) -> None:
    """Record several acceptances ({delivery id: provider message id}) in one statement."""
    if accepted:
        conn.exec_driver_sql(query("mark_sent_many"), {
            "ids": list(accepted), "provider_message_ids": list(accepted.values())})


def mark_failed(
    conn: Connection, delivery_id: int, code: str, message: str, *, outcome_unknown: bool = False
) -> None:
    """Record a final failure with the provider's (or our) code and message.

    `outcome_unknown`: the last attempt may still have been accepted.
    """
    conn.exec_driver_sql(
        query("mark_failed"),
        {"id": delivery_id, "error_code": code, "error_message": message[:2000],
         "outcome_unknown": outcome_unknown},
    )


def mark_skipped(conn: Connection, delivery_id: int, reason: str) -> None:
    """Record that this delivery will not be sent, and why."""
    conn.exec_driver_sql(query("mark_skipped"), {"id": delivery_id, "skip_reason": reason})


def schedule_retry(
    conn: Connection,
    delivery_id: int,
    *,
    countdown_s: float,
    outcome_unknown: bool,
    code: str,
    message: str,
    parked: bool = False,
) -> None:
    """Release the lease and record the transient error and when the next attempt is due.

    `parked`: no task is published for it; the queue run releases it in time.
    """
    conn.exec_driver_sql(
        query("schedule_retry"),
        {
            "id": delivery_id,
            "countdown_s": countdown_s,
            "parked": parked,
            "outcome_unknown": outcome_unknown,
            "error_code": code,
            "error_message": message[:2000],
        },
    )


def note_wait(conn: Connection, delivery_ids: list[int], countdown_s: float, *,
              parked: bool = False) -> None:
    """Record that these deliveries wait `countdown_s` for a slot (parked: no task holds them)."""
    conn.exec_driver_sql(query("note_wait"),
                         {"ids": delivery_ids, "countdown_s": countdown_s, "parked": parked})


def rate_limited(conn: Connection, delivery_ids: list[int], *, outcome_unknown: bool,
                 code: str, message: str) -> None:
    """A 429: release the lease; the call does not count against the retry budget."""
    conn.exec_driver_sql(
        query("rate_limited"),
        {"ids": delivery_ids, "outcome_unknown": outcome_unknown, "error_code": code,
         "error_message": message[:2000]},
    )


@dataclass(frozen=True)
class Released:
    """A parked delivery whose time has come within reach: publish its task for `in_s`."""

    id: int
    channel: str
    in_s: float


def release_parked(conn: Connection, *, horizon_s: float, limit: int) -> list[Released]:
    """Unpark deliveries due within `horizon_s`."""
    rows = conn.exec_driver_sql(
        query("release_parked"), {"horizon_s": horizon_s, "limit": limit}
    ).all()
    return [Released(int(r.id), str(r.channel), float(r.in_s)) for r in rows]


def seconds_until_next_parked(conn: Connection) -> float | None:
    """How long until the earliest parked delivery's time; None when none is parked."""
    value = conn.exec_driver_sql(query("seconds_until_next_parked")).scalar()
    return None if value is None else float(value)


def lock_email_batch_candidates(
    conn: Connection, delivery_ids: list[int]
) -> list[tuple[int, str | None, bool]]:
    """Lock (id, previous batch id, outcome unknown) of the e-mails a batch task may take."""
    rows = conn.exec_driver_sql(query("lock_email_batch_candidates"), {"ids": delivery_ids}).all()
    return [(int(r.id), r.email_batch_id, bool(r.outcome_unknown)) for r in rows]


def email_batch_member_ids(conn: Connection, batch_id: str) -> set[int]:
    """Every delivery ever claimed into batch `batch_id`."""
    rows = conn.exec_driver_sql(query("email_batch_member_ids"), {"batch_id": batch_id}).all()
    return {int(r.id) for r in rows}


def email_batch_key_age_s(conn: Connection, batch_id: str) -> float | None:
    """Seconds since batch `batch_id`'s Idempotency-Key first went out; None: not kept."""
    value = conn.exec_driver_sql(query("email_batch_key_age"), {"batch_id": batch_id}).scalar()
    return None if value is None else float(value)


@dataclass(frozen=True)
class BatchMember:
    """What a batch claim stores of one member's rendered e-mail."""

    id: int
    recipient: str
    body: str
    subject: str
    template_used: str
    #: The language it was rendered in (the timeline shows it).
    language: str


@dataclass(frozen=True)
class BatchClaim:
    """What a batch claim did: every member taken, or none (see `refused`)."""

    #: {id: attempts this run} of the members taken.
    taken: dict[int, int]
    #: {id: skip reason, or None for an address changed since the render}:
    #: the members that stopped the claim; the skipped ones are ended.
    refused: dict[int, str | None]


def claim_email_batch(conn: Connection, batch_id: str, members: list[BatchMember], *,
                      lease_s: float, provider: str) -> BatchClaim:
    """Persist membership and lease every member, if every member's consent holds."""
    rows = conn.exec_driver_sql(
        query("claim_email_batch"),
        {
            "batch_id": batch_id,
            "lease_s": lease_s,
            "provider": provider,
            "ids": [m.id for m in members],
            "recipients": [m.recipient for m in members],
            "bodies": [m.body for m in members],
            "subjects": [m.subject for m in members],
            "templates": [m.template_used for m in members],
            "languages": [m.language for m in members],
        },
    ).all()
    return BatchClaim({int(r.id): int(r.attempts_this_run) for r in rows
                       if r.attempts_this_run is not None},
                      {int(r.id): r.skip_reason for r in rows if r.attempts_this_run is None})


def set_sms_opt_out(conn: Connection, phone: str, *, opted_out: bool, source: str) -> None:
    """Record an SMS opt-out (or, with opted_out=False, an opt-in) for a phone number.

    The one opt-out path, whatever the source: Twilio's error 21610
    (`twilio:21610`), an inbound STOP or START (`inbound:STOP`), or staff
    (`regnotify opt-out PHONE [--undo]`, source `staff`). Its one effect is the
    number's `sms_opt_outs` row. Preferences are left alone: `notification_pref`
    is the customer's choice, an opt-out is a carrier-level fact about the
    number, and the claim already skips SMS to an opted-out number (skip
    reason `opted_out`) while e-mail goes on as chosen.
    """
    conn.exec_driver_sql(
        query("opt_out_phone"), {"phone": phone, "opted_out": opted_out, "source": source}
    )


def sweep_stale(conn: Connection, *, older_than_s: float, limit: int) -> list[DeliveryRef]:
    """Deliveries still moving whose task may be lost; touched so each is swept once per window."""
    rows = conn.exec_driver_sql(
        query("sweep_stale"), {"older_than_s": older_than_s, "limit": limit}
    ).all()
    return [DeliveryRef(int(r.id), str(r.channel)) for r in rows]


def failed(
    conn: Connection, *, since: datetime, channel: str | None, registration_id: str | None
) -> list[DeliveryRef]:
    """Failed deliveries matching the filters, oldest first."""
    rows = conn.exec_driver_sql(
        query("failed_deliveries"),
        {"since": since, "channel": channel, "registration_id": registration_id},
    ).all()
    return [DeliveryRef(int(r.id), str(r.channel)) for r in rows]


def requeue_failed(conn: Connection, delivery_id: int) -> DeliveryRef | None:
    """Put a failed delivery back to queued with a fresh attempt budget."""
    row = conn.exec_driver_sql(query("requeue_failed"), {"id": delivery_id}).first()
    return None if row is None else DeliveryRef(int(row.id), str(row.channel))
