"""Claim throughput: due queue rows closed per second by concurrent claimers.

Each claimer is what a tick run does, minus the dispatch: the real
`db.queue.claim_due` (one statement that closes a batch of due rows and
writes two delivery rows for each) in its own transaction, repeated until
nothing is due. Two claimers run at once, as two tick runs would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection

from bench import workload
from db.connection import make_engine
from db.queue import claim_due

#: The database's ceiling for comparison: the same lock-and-close of due rows
#: on the same index, without the two delivery rows per queue row (and their
#: foreign-key checks and five indexes) that the real claim writes.
CLOSE_ONLY_SQL = """
WITH closed AS (
    UPDATE public.notification_queue AS q
    SET sent = true, processed_at = now(), updated_at = now(), closed_reason = 'processed'
    WHERE q.id = ANY(ARRAY(
        SELECT d.id FROM public.notification_queue AS d
        WHERE d.sent = false AND d.send_after <= now()
        ORDER BY d.send_after LIMIT %(batch)s
        FOR UPDATE SKIP LOCKED))
    RETURNING q.id
)
SELECT count(*) FROM closed
"""


def close_only(conn: Connection, batch: int) -> int:
    """Close up to `batch` due rows without writing deliveries; returns how many."""
    return int(conn.exec_driver_sql(CLOSE_ONLY_SQL, {"batch": batch}).scalar() or 0)


def real_claim(conn: Connection, batch: int) -> int:
    """The pipeline's claim (db.queue.claim_due); returns the queue rows it closed."""
    return claim_due(conn, batch).closed


@dataclass(frozen=True)
class ClaimFigures:
    """One drain of the due queue."""

    rows: int
    claimers: int
    batch: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        """Queue rows closed per second, all claimers together."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def drain(url: str, *, claimers: int, batch: int,
          step: Callable[[Connection, int], int] = real_claim) -> tuple[int, float]:
    """Drain every due row with `claimers` threads running `step`; returns (rows, seconds)."""
    engine = make_engine(url, pool_size=claimers)
    closed = [0] * claimers
    errors: list[BaseException] = []
    # Connect first, so the timing covers claiming, not connection set-up.
    warm = [engine.connect() for _ in range(claimers)]
    for conn in warm:
        conn.close()
    start = threading.Barrier(claimers + 1)

    def claimer(slot: int) -> None:
        try:
            start.wait()
            while True:
                with engine.begin() as conn:
                    done = step(conn, batch)
                closed[slot] += done
                if done == 0:
                    return
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,), daemon=True) for i in range(claimers)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    engine.dispose()
    if errors:
        raise errors[0]
    return sum(closed), elapsed


def measure(url: str, *, rows: int, claimers: int = 2, batch: int = 500, repeats: int = 1,
            step: Callable[[Connection, int], int] = real_claim) -> ClaimFigures:
    """Seed `rows` due rows and drain them with `step`, `repeats` times; keeps the fastest.

    The fastest, not the mean: on a shared machine every disturbance only
    ever slows a run down, so the best run is the closest to the claim's cost.
    """
    best: ClaimFigures | None = None
    for _ in range(repeats):
        workload.fresh(url, rows, due=rows)
        done, seconds = drain(url, claimers=claimers, batch=batch, step=step)
        if done != rows:
            raise RuntimeError(f"claimed {done} of {rows} due rows")
        figures = ClaimFigures(rows, claimers, batch, seconds)
        if best is None or figures.rows_per_s > best.rows_per_s:
            best = figures
    assert best is not None
    return best
