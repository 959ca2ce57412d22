"""Prune throughput while staff keep moving stages: `python -m bench.prune`.

Seeds a queue with a million processed rows older than the retention age
(plus old webhook events, young processed rows and one pending row per
registration), then runs the real prune (`db.prune.prune`: one batch of each
kind per transaction, until nothing is left) while a thread updates
registrations' stages in a loop, each UPDATE firing the trigger's upsert
into the queue. Prints rows deleted per second and the UPDATE latencies seen
during the prune; the last line is one JSON object.

    python -m bench.prune                      # a private PostgreSQL, 1,000,000 rows
    python -m bench.prune --rows 200000 --database-url postgresql://...   # a scratch database
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

from db.connection import libpq_url, make_engine
from db.prune import DEFAULT_BATCH, prune
from tasks.local.embedded_postgres import EmbeddedPostgres, free_port

#: Stages the updater alternates between (both are real stages).
_STAGES = ("documents_collected", "submitted_to_dmv")


@dataclass(frozen=True)
class Seeded:
    """What `seed` put in, so a caller can check what must go and what must stay."""

    registrations: int
    old_processed: int
    young_processed: int
    old_webhooks: int
    young_webhooks: int


def seed(url: str, *, old_rows: int, registrations: int = 1000, young_rows: int = 1000,
         old_webhooks: int = 50_000, young_webhooks: int = 500) -> Seeded:
    """Fill the queue and webhook_events with rows past and within the default ages.

    Old rows were processed 31 to 38 days ago (the default age is 30 days),
    young ones a day ago; every registration also has a pending row created
    90 days ago, which must survive: a pending row is never pruned.
    """
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.registrations (customer_name, customer_phone, current_stage) "
            "SELECT 'Prune Bench ' || g, '+1555' || lpad(g::text, 7, '0'), %s "
            "FROM generate_series(1, %s) AS g", (_STAGES[0], registrations))
        conn.execute("""
            INSERT INTO public.notification_queue
                (registration_id, old_stage, new_stage, send_after, created_at, updated_at)
            SELECT id, 'sale_complete', current_stage, now() + interval '1 day',
                   now() - interval '90 days', now() - interval '90 days'
            FROM public.registrations""")
        for count, base in ((old_rows, "31 days"), (young_rows, "1 day")):
            conn.execute(f"""
                INSERT INTO public.notification_queue
                    (registration_id, old_stage, new_stage, send_after, sent, processed_at,
                     closed_reason, created_at, updated_at)
                SELECT r.ids[1 + g %% r.n], 'sale_complete', 'documents_collected',
                       t.at, true, t.at, 'processed', t.at, t.at
                FROM (SELECT array_agg(id) AS ids, count(*)::int AS n
                      FROM public.registrations) AS r,
                     generate_series(1, %(count)s) AS g,
                     LATERAL (SELECT now() - interval '{base}'
                                     - make_interval(secs => (g %% 604800)::float8) AS at) AS t
            """, {"count": count})
        for count, base in ((old_webhooks, "15 days"), (young_webhooks, "1 hour")):
            conn.execute(f"""
                INSERT INTO public.webhook_events (provider, event_id, received_at)
                SELECT 'bench', '{base}-' || g, now() - interval '{base}'
                                                - make_interval(secs => (g %% 86400)::float8)
                FROM generate_series(1, %(count)s) AS g
            """, {"count": count})
        conn.execute("ANALYZE public.notification_queue")
        conn.execute("ANALYZE public.webhook_events")
    return Seeded(registrations, old_rows, young_rows, old_webhooks, young_webhooks)


class StageUpdater(threading.Thread):
    """Moves registrations' stages one UPDATE at a time, recording each one's latency."""

    def __init__(self, url: str) -> None:
        super().__init__(name="stage-updater", daemon=True)
        self.url = url
        self.latencies: list[float] = []
        self.error: BaseException | None = None
        self._stop_event = threading.Event()
        self._ready = threading.Event()

    def run(self) -> None:
        try:
            with psycopg.connect(libpq_url(self.url), autocommit=True) as conn:
                ids = [r[0] for r in conn.execute(
                    "SELECT id FROM public.registrations ORDER BY id")]
                self._ready.set()
                i = 0
                while not self._stop_event.is_set():
                    reg = ids[i % len(ids)]
                    began = time.perf_counter()
                    conn.execute(
                        "UPDATE public.registrations SET current_stage = CASE current_stage "
                        "WHEN %s THEN %s ELSE %s END WHERE id = %s",
                        (_STAGES[0], _STAGES[1], _STAGES[0], reg))
                    self.latencies.append(time.perf_counter() - began)
                    i += 1
        except BaseException as exc:  # reported by the caller
            self.error = exc
        finally:
            self._ready.set()

    def start_and_wait(self) -> None:
        """Start, and return once the first UPDATE is about to go."""
        self.start()
        self._ready.wait(30)

    def stop(self) -> None:
        """Finish the UPDATE in progress and stop; raises what the thread hit."""
        self._stop_event.set()
        self.join(30)
        if self.error is not None:
            raise self.error


@dataclass(frozen=True)
class PruneFigures:
    """One prune of a seeded database with stage updates running."""

    deleted: int
    batches: int
    batch_size: int
    seconds: float
    updates: int
    worst_update_s: float
    p99_update_s: float

    @property
    def rows_per_s(self) -> float:
        """Rows deleted per second, every kind together."""
        return self.deleted / self.seconds if self.seconds > 0 else 0.0


def measure(url: str, *, batch_size: int = DEFAULT_BATCH) -> PruneFigures:
    """Prune everything due on `url` while a StageUpdater runs; the figures of that prune."""
    engine = make_engine(url, pool_size=1)
    updater = StageUpdater(url)
    updater.start_and_wait()
    try:
        began = time.perf_counter()
        result = prune(engine, batch_size=batch_size)
        seconds = time.perf_counter() - began
    finally:
        updater.stop()
        engine.dispose()
    lat = sorted(updater.latencies) or [0.0]
    return PruneFigures(
        deleted=result.total, batches=result.batches, batch_size=batch_size,
        seconds=seconds, updates=len(updater.latencies), worst_update_s=lat[-1],
        p99_update_s=lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    )


def _private_cluster(root: Path) -> EmbeddedPostgres:
    from db.install.migrations import migrate

    pg = EmbeddedPostgres(data_dir=root / "pg", port=free_port(), database="regnotify_bench")
    pg.chown(root)
    pg.start()
    migrate(pg.url)
    return pg


def main(argv: list[str] | None = None) -> int:
    """Seed, prune with stage updates flowing, print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.prune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="old processed queue rows")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--database-url", help="a migrated scratch database (rows are added "
                        "to it and pruned); default: a private PostgreSQL")
    args = parser.parse_args(argv)

    root: Path | None = None
    pg: EmbeddedPostgres | None = None
    try:
        if args.database_url:
            url = args.database_url
        else:
            root = Path(tempfile.mkdtemp(prefix="regnotify-bench-prune-"))
            pg = _private_cluster(root)
            url = pg.url
        t0 = time.perf_counter()
        seeded = seed(url, old_rows=args.rows)
        seed_s = time.perf_counter() - t0
        print(f"seeded {seeded.old_processed:,} old processed queue rows and "
              f"{seeded.old_webhooks:,} old webhook events in {seed_s:.1f}s", flush=True)
        figures = measure(url, batch_size=args.batch_size)
    finally:
        if pg is not None:
            pg.stop("fast")
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"pruned {figures.deleted:,} rows in {figures.seconds:.1f}s "
          f"({figures.rows_per_s:,.0f} rows/s, {figures.batches} batches of up to "
          f"{figures.batch_size} per kind)")
    print(f"stage UPDATEs during the prune: {figures.updates:,}, worst "
          f"{figures.worst_update_s * 1000:.1f} ms, p99 {figures.p99_update_s * 1000:.1f} ms")
    print(json.dumps({**asdict(figures), "rows_per_s": round(figures.rows_per_s),
                      "seed_s": round(seed_s, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
