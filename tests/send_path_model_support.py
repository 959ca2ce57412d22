"""What the send-path model (tests/test_send_path_model.py) drives and checks with.

* the clock: `move_clock` moves "now" for the whole stack: every stored time
  goes back by the step (so every `<= now()` comparison of the server sees the
  step pass), and the wall clock quiet hours are read on
  (public.regnotify_now(), migration 23) goes forward by it;
* a worker that dies: `worker_dies` lets the provider call happen (or not)
  and then stops the task where a killed process would stop, before anything
  after the call runs;
* the ledger checks: each message a wire stand-in accepted, matched to its
  delivery row, against the promises.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

#: Tables whose times the clock moves (every timestamp column of each).
CLOCK_TABLES = ("notification_queue", "registration_notifications", "reply_digests",
                "inbound_messages", "sms_opt_outs", "registrations")


class WorkerDied(BaseException):
    """The worker process was killed: nothing after this point of the task runs.

    A BaseException, so no `except Exception` in the task code can swallow it.
    """


def clock_offset_s(conn: psycopg.Connection) -> float:
    row = conn.execute("SELECT extract(epoch FROM public.regnotify_now() - now())::float8 "
                       "AS s").fetchone()
    return float(row["s"])


def set_clock_offset(conn: psycopg.Connection, offset_s: float) -> None:
    """Put the wall clock `offset_s` from the server's, for every new connection."""
    from tasks.database import reset_engine

    database = conn.execute("SELECT current_database() AS d").fetchone()["d"]
    conn.execute(f'ALTER DATABASE "{database}" SET regnotify.clock_offset_s = '
                 f"'{float(offset_s)!r}'")
    conn.execute(f"SET regnotify.clock_offset_s = '{float(offset_s)!r}'")
    reset_engine()  # pooled connections read the setting when they connect


def reset_clock(conn: psycopg.Connection) -> None:
    from tasks.database import reset_engine

    database = conn.execute("SELECT current_database() AS d").fetchone()["d"]
    conn.execute(f'ALTER DATABASE "{database}" RESET regnotify.clock_offset_s')
    conn.execute("RESET regnotify.clock_offset_s")
    reset_engine()


def move_clock(conn: psycopg.Connection, seconds: float) -> None:
    """`seconds` pass for the whole stack."""
    for table in CLOCK_TABLES:
        columns = [r["column_name"] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name = %s AND data_type LIKE 'timestamp%%'", (table,))]
        if columns:
            sets = ", ".join(f"{c} = {c} - make_interval(secs => %(s)s)" for c in columns)
            conn.execute(f"UPDATE public.{table} SET {sets}", {"s": seconds})
    set_clock_offset(conn, clock_offset_s(conn) + seconds)


def seconds_to_local(conn: psycopg.Connection, zone: str, local: str) -> float:
    """Seconds until the wall clock next reads `local` (HH:MM:SS) in `zone`."""
    row = conn.execute(
        "SELECT extract(epoch FROM ((((regnotify_now() AT TIME ZONE %(z)s)::date "
        "  + %(t)s::time) AT TIME ZONE %(z)s) - regnotify_now()))::float8 AS s",
        {"z": zone, "t": local}).fetchone()
    left = float(row["s"])
    return left if left > 0 else left + 86400


@contextmanager
def worker_dies(when: str | None) -> Iterator[None]:
    """Kill the worker around the next provider calls: 'before_call' (after the
    claim), 'after_accept' (the provider accepted, nothing recorded), or None."""
    if when is None:
        yield
        return
    from tasks.providers.registry import email_provider, sms_provider

    patched: list[tuple[Any, str]] = []

    def wrap(provider: Any, name: str) -> None:
        original = getattr(provider, name)

        def dying(*args: Any, **kwargs: Any) -> Any:
            if when == "after_accept":
                original(*args, **kwargs)
            raise WorkerDied(when)

        setattr(provider, name, dying)
        patched.append((provider, name))

    for provider, name in ((sms_provider(), "send"), (email_provider(), "send"),
                           (email_provider(), "send_batch")):
        wrap(provider, name)
    try:
        yield
    except WorkerDied:
        pass
    finally:
        for provider, name in patched:
            delattr(provider, name)


def concurrently(*calls: Any) -> list[BaseException]:
    """Run the calls at once on their own threads (two workers); their errors."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(calls))

    def run(call: Any) -> None:
        try:
            start.wait()
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors
