"""Figures for the relay's /metrics, read from the database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from db.queries import query


@dataclass(frozen=True)
class QueueFigures:
    """The debounce queue right now."""

    pending: int
    due: int
    oldest_due_age_s: float


@dataclass(frozen=True)
class DeliveryFigures:
    """Deliveries of the last 24 h in one (channel, status)."""

    channel: str
    status: str
    deliveries: int
    retries: int


def queue_figures(conn: Connection) -> QueueFigures:
    """Pending rows, rows due now, and how long the oldest due row has waited."""
    row = conn.exec_driver_sql(query("metrics_queue")).one()
    return QueueFigures(int(row.pending), int(row.due), float(row.oldest_due_age_s))


def delivery_figures(conn: Connection) -> list[DeliveryFigures]:
    """Deliveries and their retries by channel and status over the last 24 h."""
    rows = conn.exec_driver_sql(query("metrics_deliveries")).all()
    return [DeliveryFigures(r.channel, r.status, int(r.deliveries), int(r.retries)) for r in rows]


def held_figures(conn: Connection) -> dict[str, int]:
    """Deliveries held for quiet hours right now, by channel."""
    rows = conn.exec_driver_sql(query("metrics_held")).all()
    return {str(r.channel): int(r.held) for r in rows}


def reply_figures(conn: Connection) -> dict[tuple[str, str], int]:
    """Inbound texts of the last 24 h: {(kind, sender): count}; kind reply/opt_out/opt_in/help."""
    rows = conn.exec_driver_sql(query("metrics_replies")).all()
    return {(str(r.kind), str(r.sender)): int(r.replies) for r in rows}


def reply_digest_figures(conn: Connection) -> dict[str, int]:
    """E-mails to staff about replies: open now, sent or failed in the last 24 h, by status."""
    rows = conn.exec_driver_sql(query("metrics_reply_digests")).all()
    return {str(r.status): int(r.digests) for r in rows}


def outcome_unknown_figures(conn: Connection) -> dict[str, int]:
    """Failed deliveries that may have been accepted all the same, by channel."""
    rows = conn.exec_driver_sql(query("metrics_outcome_unknown")).all()
    return {str(r.channel): int(r.unknown) for r in rows}
