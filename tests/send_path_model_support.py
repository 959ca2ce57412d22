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


# ── the world's settings ────────────────────────────────────────────────────

#: The environment set_world changes.
WORLD_ENV = ("PROVIDER_TIMEOUT_S", "WORKER_CONCURRENCY", "CELERY_BROKER_URL",
             "COORDINATION_REDIS_URL", "CELERY_BROKER_WRITE_URL")


def restore_world_env_after(monkeypatch: Any) -> None:
    """Have `monkeypatch` put back every variable set_world may change, absent ones included."""
    import os

    for key in WORLD_ENV:
        # setenv first, so the undo removes a key that was absent (a delenv of
        # an absent key records nothing, and set_world's value would outlive us).
        monkeypatch.setenv(key, os.environ.get(key, ""))
        if os.environ[key] == "":
            monkeypatch.delenv(key)


def set_world(*, timeout_s: float, coordination: str, threads: int, redis_url: str) -> None:
    """The settings one example runs under, in this process's environment.

    `timeout_s`: PROVIDER_TIMEOUT_S, from which the adapters' connect and read
    timeouts, the leases and the gate's hold all derive. `coordination`:
    'redis', or 'postgresql' (no Redis for coordination: the broker URL is
    not a Redis one, as with RabbitMQ). `threads`: the worker's `-c`, above
    the WORKER_CONCURRENCY setting (2), as `regnotify worker -c N` sets it;
    the pool is sized by the worker's own start signal (worker_init), as in
    production.
    """
    import os

    from celery.signals import worker_init

    from tests.conftest import reset_process_state

    os.environ["PROVIDER_TIMEOUT_S"] = repr(float(timeout_s))
    os.environ["WORKER_CONCURRENCY"] = "2"
    if coordination == "postgresql":
        os.environ["CELERY_BROKER_URL"] = "amqp://guest:guest@127.0.0.1:5672/unused"
        os.environ.pop("COORDINATION_REDIS_URL", None)
        # Celery itself reads CELERY_BROKER_URL too: its publishes still go to
        # the test's broker, where the model's queue runs leave them.
        os.environ["CELERY_BROKER_WRITE_URL"] = redis_url
    else:
        os.environ["CELERY_BROKER_URL"] = redis_url
        os.environ.pop("COORDINATION_REDIS_URL", None)
        os.environ.pop("CELERY_BROKER_WRITE_URL", None)
    reset_process_state()
    from tasks import database

    database._threads = None
    worker_init.send(sender=_StartingWorker(threads))


class _StartingWorker:
    """What worker_init's handler reads of the Celery worker that starts: its pool and `-c`."""

    pool_cls = "threads"

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency


# ── a provider call slower than it should be ────────────────────────────────

def request_addresses(request: Any) -> list[str]:
    """Who a provider request is for: a text's To, an e-mail's (or batch's) to, a lookup's To."""
    import json
    from urllib.parse import parse_qs

    if request.method == "GET":
        return [v for v in request.query.get("To", [])]
    body = request.body.decode("utf-8", "replace")
    if request.path.endswith(".json"):  # Twilio's form
        return parse_qs(body).get("To", [])
    try:
        data = json.loads(body or "null")
    except ValueError:
        return []
    found: list[str] = []
    for item in data if isinstance(data, list) else [data]:
        if isinstance(item, dict):
            to = item.get("to")
            found.extend(to if isinstance(to, list) else [to] if to else [])
    return found


class SlowCalls:
    """The stand-ins' pause hook: the next call for an address is slow.

    'worst': the call lasts what the adapters' timeouts allow (twice
    PROVIDER_TIMEOUT_S: connect, then upload and read) and the provider sees
    the request only at its end, the latest it can: up to `real_cap_s` is
    slept for real (under the read timeout), the rest passes on the model's
    clock. 'past_lease': the provider accepted and the
    answer comes after the claim's lease has lapsed (a stalled worker, an
    answer trickling in under the read timeout).

    While the call is out `while_out(seconds)` runs the rest of the world (the
    model moves its clock by `seconds`, runs the queue run's sweep and a
    second worker); errors it raised are kept in `errors` for the model.
    """

    def __init__(self, while_out: Any, *, real_cap_s: float = 0.25) -> None:
        self._lock = threading.Lock()
        #: address -> the kinds of its next calls (None: that call is not slow).
        self._armed: dict[str, list[str | None]] = {}
        #: Requests accepted whose answer is to be held: id(request) -> kind.
        self._pending: dict[int, str] = {}
        #: A call is held now (the world's own calls then pass unheld).
        self._holding = False
        self.while_out = while_out
        self.real_cap_s = real_cap_s
        self.fired: list[str] = []
        self.errors: list[BaseException] = []
        #: PROVIDER_TIMEOUT_S and the lease of the world, set per example.
        self.timeout_s = 1.0
        self.lease_s = 19.0

    def arm(self, address: str, kind: str | None) -> None:
        """The next call for `address` ('*sms', '*email': any on that channel) is `kind`."""
        with self._lock:
            self._armed.setdefault(address, []).append(kind)

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()
            self._pending.clear()

    def __call__(self, request: Any, phase: str) -> None:
        import time

        with self._lock:
            if self._holding:
                return  # one call held at a time: the world's own calls go through
            if phase == "arrived":
                channel = "*sms" if request.path.endswith(".json") else "*email"
                address = next((a for a in [*request_addresses(request), channel]
                                if self._armed.get(a)), None)
                if address is None:
                    return
                kind = self._armed[address].pop(0)
                if kind is None:
                    return
                self.fired.append(kind)
                if kind == "past_lease":
                    self._pending[id(request)] = kind  # held when its answer goes out
                    return
            else:
                # A request the provider dropped never gets here: nothing stays pending
                # but its entry, which the next clear() forgets.
                kind = self._pending.pop(id(request), None)
                if kind is None:
                    return
            self._holding = True
        try:
            if kind == "worst":
                # The provider sees the request at the end of the call's bound
                # (connect and upload at their timeouts) and answers at once:
                # part of it for real, under the read timeout, the rest on the
                # clock while the world acts. Only where the read timeout
                # leaves room for the world's own steps (a second or more):
                # past it the client would give up, a lost answer instead.
                real = min(self.timeout_s * 0.6, self.real_cap_s)
                time.sleep(real)
                if self.timeout_s >= 1:
                    self._out(2 * self.timeout_s - real)
            else:
                self._out(self.lease_s + 1)
        finally:
            with self._lock:
                self._holding = False

    def _out(self, seconds: float) -> None:
        try:
            self.while_out(seconds)
        except BaseException as exc:  # handed to the model's step, raised there
            self.errors.append(exc)
