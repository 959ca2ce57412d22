"""Retention: prune processed queue rows, webhook events, our pg_cron run history, replies.

The SQL (migration 11's `prune_notifications`) deletes one small batch of
each kind per call; `prune` here calls it until nothing is left, each call in
its own transaction, so no lock or snapshot is held for longer than a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine

from db.queries import query

#: The pg_cron job migration 11 schedules.
PRUNE_JOB_NAME = "regnotify-prune"

#: Rows of one kind per statement: big enough to be quick, small enough that
#: a statement takes milliseconds.
DEFAULT_BATCH = 5000

#: The kinds, in the order the SQL prunes and reports them.
KINDS = ("processed_queue", "webhook_events", "cron_history", "deliveries", "replies")


@dataclass(frozen=True)
class Candidates:
    """What a prune would delete of one kind right now."""

    kind: str
    #: None: kept forever (no age configured).
    older_than: timedelta | None
    rows: int
    oldest: datetime | None


@dataclass
class PruneResult:
    """What a prune deleted, per kind, and in how many batches."""

    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    batches: int = 0

    @property
    def total(self) -> int:
        """Rows deleted of every kind."""
        return sum(self.deleted.values())


def prune_batch(conn: Connection, batch_size: int = DEFAULT_BATCH) -> dict[str, int]:
    """Delete one batch of each kind in the caller's transaction; {kind: rows deleted}."""
    rows = conn.exec_driver_sql(query("prune_batch"), {"batch_size": batch_size}).all()
    return {str(r.kind): int(r.deleted) for r in rows}


def preview(conn: Connection) -> list[Candidates]:
    """Per kind: its age, how many rows are older, and the oldest of them."""
    rows = conn.exec_driver_sql(query("prune_preview")).all()
    return [Candidates(str(r.kind), r.older_than, int(r.due), r.oldest) for r in rows]


def prune(
    engine: Engine,
    *,
    batch_size: int = DEFAULT_BATCH,
    on_batch: Callable[[int, dict[str, int]], object] | None = None,
    max_batches: int | None = None,
) -> PruneResult:
    """Delete batches, one transaction each, until a batch finds nothing (or `max_batches`).

    `on_batch(n, deleted)` is called after each committed batch, for progress.
    """
    result = PruneResult()
    while max_batches is None or result.batches < max_batches:
        with engine.begin() as conn:
            deleted = prune_batch(conn, batch_size)
        result.batches += 1
        for kind, n in deleted.items():
            result.deleted[kind] = result.deleted.get(kind, 0) + n
        if on_batch is not None:
            on_batch(result.batches, deleted)
        # A kind that filled its batch may have more; one that did not is done.
        if not any(n >= batch_size for n in deleted.values()):
            break
    return result


def cron_prunes(conn: Connection) -> bool:
    """Whether pg_cron is installed here and runs the prune job."""
    present = conn.exec_driver_sql(query("relay_cron_extension_present")).scalar()
    if not present:
        return False
    return bool(conn.exec_driver_sql(query("prune_cron_job_active")).scalar())
