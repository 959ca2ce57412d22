"""The other channel when one fails for good (sql/queries/fallback.sql)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from db.queries import query
from db.queue import DeliveryRef


@dataclass(frozen=True)
class Fallback:
    """The delivery that replaces a failed one on the other channel."""

    ref: DeliveryRef
    #: Inside the customer's quiet hours: the queue run releases it, not the caller.
    held: bool


def fallback_for_failed(conn: Connection, delivery_id: int) -> Fallback | None:
    """Queue the failed delivery's message on the other channel, if every rule allows.

    Run it in the transaction that recorded the failure; dispatch the result
    (unless held) after the commit. Calling it again for the same delivery
    returns None, so a duplicated webhook or a retried task sends nothing more.
    """
    row = conn.exec_driver_sql(query("fallback_for_failed"), {"id": delivery_id}).first()
    if row is None:
        return None
    return Fallback(DeliveryRef(int(row.id), str(row.channel)), bool(row.held))
