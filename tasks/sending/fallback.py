"""The other channel when one fails for good: the decision is one SQL statement
(sql/queries/fallback.sql), shared by the send path and the status webhooks."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import Connection

from db.fallback import Fallback, fallback_for_failed
from db.webhooks import StatusChange

log = logging.getLogger(__name__)


def fall_back(conn: Connection, delivery_id: int) -> Fallback | None:
    """In the transaction that recorded the failure: queue the other channel if allowed."""
    fallback = fallback_for_failed(conn, delivery_id)
    if fallback is not None:
        log.info("delivery %d failed for good: falling back to %s (delivery %d%s)",
                 delivery_id, fallback.ref.channel, fallback.ref.id,
                 ", held for quiet hours" if fallback.held else "")
    return fallback


def dispatch_fallbacks(fallbacks: Iterable[Fallback | None]) -> int:
    """After the commit: send the fallbacks that are not held; returns how many were enqueued.

    A broker failure is logged, not raised: the delivery is a committed
    `queued` row, so the queue run's sweep sends it.
    """
    from tasks.broker.dispatch import dispatch

    refs = [f.ref for f in fallbacks if f is not None and not f.held]
    if not refs:
        return 0
    try:
        return dispatch(refs)
    except Exception as exc:
        log.warning("fallback: could not enqueue %d send(s) (%s); the sweep will send them",
                    len(refs), type(exc).__name__)
        return 0


#: Statuses a webhook sets that may mean "failed for good" (the SQL decides).
FINAL_FAILURES = frozenset({"failed", "undelivered", "bounced"})


def fall_back_after_webhook(conn: Connection, changes: Iterable[StatusChange]
                            ) -> list[Fallback]:
    """For each delivery a webhook just moved to a final failure, try the other channel.

    Only a callback that moved the row asks: a duplicate or out-of-order one
    finds it final already and does nothing, and the SQL guards it again.
    """
    found = []
    for change in changes:
        if change.moved and change.new_status in FINAL_FAILURES:
            fallback = fall_back(conn, change.delivery_id)
            if fallback is not None:
                found.append(fallback)
    return found
