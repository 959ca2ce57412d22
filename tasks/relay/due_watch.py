"""Ask for a queue run when the earliest pending send_after changes: a short window leaves on time.

A run arms the wake-up at the next send_after (tasks/broker/wakeup.py), but only a
run does: a burst that opens between two runs has none armed until the
next tick, which is pg_cron's minute. The relay's LISTEN connection reads
the earliest pending send_after every second (one index probe); when it
differs from what it read last, a burst opened (or the earliest one left)
and one coalesced run arms the wake-up for it. The stage UPDATE pays
nothing: a NOTIFY from the trigger, the alternative, serialises every
notifying commit on a cluster-wide lock (`python -m bench.trigger`: about
40 % fewer stage UPDATEs per second when every UPDATE opens a burst).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import psycopg
from psycopg.rows import tuple_row

from db.queries import query


class DueWatch:
    """Calls `on_tick("due")` when the earliest pending send_after is not the one seen last."""

    def __init__(self, on_tick: Callable[[str], object]) -> None:
        self._on_tick = on_tick
        self._last: datetime | None = None
        self.checks = 0
        self.ticks = 0

    def check(self, conn: psycopg.Connection) -> None:
        """Read the earliest pending send_after on `conn`; tick when it changed."""
        with conn.cursor(row_factory=tuple_row) as cur:
            row = cur.execute(query("next_pending_send_after")).fetchone()
        earliest = row[0] if row else None
        self.checks += 1
        if earliest is not None and earliest != self._last:
            self.ticks += 1
            self._on_tick("due")
        self._last = earliest
