"""Data access for the relay: provider status webhooks, SMS opt-outs, webhook dedup, pg_cron."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from db.queries import query

#: Statuses a delivery never leaves once it has one.
FINAL_STATUSES = frozenset({"undelivered", "failed", "bounced", "complained", "skipped"})
#: Statuses a provider callback may set.
WEBHOOK_STATUSES = frozenset(
    {"queued", "sending", "sent", "delivered", "undelivered", "failed", "bounced", "complained"}
)

#: The pg_cron job migration 04 schedules to run `SELECT notification_tick()`.
CRON_JOB_NAME = "process-notification-queue"


@dataclass(frozen=True)
class StatusChange:
    """What one callback did to one delivery."""

    delivery_id: int
    previous_status: str
    new_status: str | None

    @property
    def moved(self) -> bool:
        """Whether the callback changed the row (False: stale, duplicate or final)."""
        return self.new_status is not None


def apply_status(
    conn: Connection,
    *,
    channel: str,
    provider_message_id: str,
    status: str,
    error_code: str | None = None,
    error_message: str | None = None,
    occurred_at: datetime | None = None,
) -> list[StatusChange]:
    """Move the delivery with this provider id forward to `status`; [] when the id is unknown.

    Error fields are written only with a final failure; `occurred_at` becomes
    delivered_at (now() when the provider gave no time).
    """
    if status not in WEBHOOK_STATUSES:
        raise ValueError(f"not a delivery status a webhook may set: {status!r}")
    rows = conn.exec_driver_sql(
        query("webhook_apply_status"),
        {
            "channel": channel,
            "provider_message_id": provider_message_id,
            "status": status,
            "error_code": error_code,
            "error_message": error_message[:2000] if error_message else error_message,
            "occurred_at": occurred_at,
        },
    ).all()
    return [StatusChange(int(r.id), str(r.previous_status), r.new_status) for r in rows]


def note_delay(
    conn: Connection, *, channel: str, provider_message_id: str, message: str
) -> list[StatusChange]:
    """Record a delivery delay in error_message without a status change; [] when unknown."""
    rows = conn.exec_driver_sql(
        query("webhook_note_delay"),
        {"channel": channel, "provider_message_id": provider_message_id,
         "error_message": message[:2000]},
    ).all()
    return [StatusChange(int(r.id), str(r.previous_status), r.new_status) for r in rows]


def first_seen(conn: Connection, provider: str, event_id: str) -> bool:
    """Record a provider event id; False when it was recorded before (a replay)."""
    row = conn.exec_driver_sql(
        query("webhook_event_first_seen"), {"provider": provider, "event_id": event_id}
    ).first()
    return row is not None


def cron_job_scheduled(conn: Connection, jobname: str = CRON_JOB_NAME) -> bool:
    """Whether pg_cron is installed here and has an active job of that name.

    A role that cannot read cron.job raises; callers treat that as "cannot tell".
    """
    present = conn.exec_driver_sql(query("relay_cron_extension_present")).scalar()
    if not present:
        return False
    return bool(
        conn.exec_driver_sql(query("relay_cron_job_active"), {"jobname": jobname}).scalar()
    )
