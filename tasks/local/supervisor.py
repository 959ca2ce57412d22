"""The stack `regnotify up` runs, started, watched and stopped in order.

PostgreSQL and Redis (when `up` starts them) first, migrated; then the
worker, the relay and Flower as children. The first to exit, or Ctrl-C,
stops everything in the reverse order: the worker finishes what it holds
while the broker and the database are still there. The state folder's lock
is held from `claim()` until everything stopped; leftovers of an `up` that
died are stopped before anything starts.
"""

from __future__ import annotations

import base64
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from db.connection import redacted
from db.install.migrations import migrate
from tasks.exceptions import CommandError, EmbeddedPostgresError
from tasks.local import leftovers
from tasks.local.child_processes import ChildProcesses
from tasks.local.embedded_postgres import EmbeddedPostgres, port_in_use
from tasks.local.embedded_redis import EmbeddedRedis
from tasks.local.server_binaries import ServerBinaries
from tasks.local.up_state import UpSecrets, UpState

#: How long each child gets after SIGTERM before SIGKILL, in stop order:
#: the worker finishes what it holds while the broker and database are up.
STOP_BOUNDS_S = {"worker": 10.0, "relay": 5.0, "flower": 3.0}


@dataclass(frozen=True)
class StackPlan:
    """What `up` runs, decided (and checked) before anything starts."""

    state: UpState
    #: Every port, given or default: postgres, redis, relay, flower.
    ports: Mapping[str, int]
    #: Binaries for the servers `up` starts itself; None: the settings name one.
    pg_binaries: ServerBinaries | None
    redis_binaries: ServerBinaries | None
    #: The server to use when `up` starts none (DATABASE_URL, CELERY_BROKER_URL).
    database_url: str | None
    broker_url: str | None
    concurrency: int

    def bound_ports(self) -> dict[str, int]:
        """The ports `up` itself listens on (those of servers it starts, the relay, Flower)."""
        ports = {"relay": self.ports["relay"], "flower": self.ports["flower"]}
        if self.pg_binaries is not None:
            ports["postgres"] = self.ports["postgres"]
        if self.redis_binaries is not None:
            ports["redis"] = self.ports["redis"]
        return ports


def _flower_noise(line: str) -> bool:
    """Flower's "Inspect method stats failed" lines: it asks before the worker answers.

    Expected at every start; whether the worker is alive shows in the
    worker's own lines and in Flower's page.
    """
    return "Inspect method" in line and "failed" in line


class LocalStack:
    """One `up`'s servers and children; `say` prints as "up"."""

    def __init__(self, plan: StackPlan, children: ChildProcesses) -> None:
        self.plan = plan
        self.children = children
        self.state = plan.state
        self.stopping = False
        self.pg: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None

    def say(self, line: str) -> None:
        """One line of `up`'s own."""
        self.children.say("up", line)

    # ── Before anything starts ───────────────────────────────────────────────

    def claim(self) -> UpSecrets:
        """Lock the state folder, clear what an earlier `up` left, check the ports.

        The lock first, so a second `up` hears why rather than "port in use";
        released again if anything here fails. Returns the folder's secrets.
        """
        self.state.lock()
        try:
            if self.plan.pg_binaries is not None:
                self.pg = EmbeddedPostgres(data_dir=self.state.postgres_dir,
                                           port=self.plan.ports["postgres"],
                                           bindir=self.plan.pg_binaries.path)
            self._clear_leftovers()
            _check_ports(self.plan.bound_ports())
            self.state.ensure()
            return self.state.secrets()
        except BaseException:
            self.state.unlock()
            raise

    def _clear_leftovers(self) -> None:
        """Stop what an `up` that ended without stopping left here, or say what is left and how."""
        found = leftovers.find(self.state.root)
        if found:
            names = ", ".join(f"{item.name} (pid {item.pid})" for item in found)
            self.say(f"an earlier up in {self.state.root} did not stop {names}: stopping them now")
            still = leftovers.stop(found)
            if still:
                raise CommandError(
                    "still running from an earlier up: "
                    + ", ".join(f"{i.name} (pid {i.pid})" for i in still)
                    + "; stop them with: " + "; ".join(i.how_to_stop() for i in still))
        leftovers.forget(self.state.root)
        pg = self.pg
        if pg is not None and pg.initialised() and pg.running():
            # We hold the folder's lock, so no live `up` owns this server.
            self.say(f"an earlier up left PostgreSQL running in {pg.data_dir}: stopping it")
            try:
                pg.stop("fast")
            except EmbeddedPostgresError as exc:
                raise CommandError(
                    f"PostgreSQL from an earlier up still runs in {pg.data_dir} and would not "
                    f"stop ({exc}); stop it with: pg_ctl -D {pg.data_dir} stop -m fast") from None
        self.state.remove_env()

    # ── Running ──────────────────────────────────────────────────────────────

    @contextmanager
    def running(self) -> Iterator[LocalStack]:
        """Ctrl-C and SIGTERM ask the stack to stop; leaving stops everything, whatever happened."""

        def _stop(signum: int, _frame: object) -> None:
            self.stopping = True

        previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            # Never raises (ChildProcesses.say drops lines once the output is gone).
            self.say("stopping ...")
            self._stop_everything()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.say("stopped")

    def start_servers(self) -> tuple[str, str]:
        """PostgreSQL (migrated) and Redis, started or the settings' own: (database, broker)."""
        pg, pg_binaries = self.pg, self.plan.pg_binaries
        if pg is not None and pg_binaries is not None:
            self.say(f"starting PostgreSQL in {self.state.postgres_dir} "
                     f"({pg_binaries.describe()}) ...")
            if pg.bindir != pg_binaries.path:
                self.say(f"running a copy in {pg.bindir}: the postgres user "
                         f"cannot read {pg_binaries.path}")
            if not pg.cron:
                self.say("no pg_cron for these binaries: the relay's own ticker "
                         "drives deliveries (RELAY_SELF_TICK=auto)")
            pg.start()
            database_url = pg.url
        else:
            database_url = str(self.plan.database_url)
        self.say(f"database {redacted(database_url)}")
        migrate(database_url, on_applied=lambda f, _n: self.say(f"applied {f}"))
        if self.plan.redis_binaries is not None:
            self.say(f"starting Redis ({self.plan.redis_binaries.describe()}) ...")
            self.redis = EmbeddedRedis(port=self.plan.ports["redis"],
                                       data_dir=self.state.redis_dir,
                                       binary=self.plan.redis_binaries.path)
            self.redis.start()
            leftovers.record(self.state.root, {"redis": self.redis.pid})
            return database_url, self.redis.url
        return database_url, str(self.plan.broker_url)

    def start_children(self, env: Mapping[str, str]) -> None:
        """The worker, the relay and Flower, each recorded as a leftover until stopped."""
        py = sys.executable
        port = self.plan.ports
        for name, argv in (
            ("worker", [py, "-m", "tasks.cli", "worker", "-c", str(self.plan.concurrency)]),
            ("relay", [py, "-m", "tasks.cli", "relay", "--host", "127.0.0.1",
                       "--port", str(port["relay"])]),
            ("flower", [py, "-m", "celery", "-A", "tasks", "flower",
                        f"--port={port['flower']}", "--address=127.0.0.1"]),
        ):
            if self.stopping:
                break
            self.children.start(name, argv, env, drop=_flower_noise if name == "flower" else None)
            leftovers.record(self.state.root, {**self.children.pids(), **(
                {"redis": self.redis.pid} if self.redis is not None else {})})

    def wait_ready(self, relay_url: str, flower_url: str, flower_auth: tuple[str, str]) -> None:
        """Until the relay and Flower answer (a minute each), or say they are slow."""
        give_up = lambda: self.stopping  # noqa: E731
        ready = not self.stopping and (
            _wait_http(f"{relay_url}/healthz", 60, give_up=give_up)
            and _wait_http(flower_url, 60, auth=flower_auth, give_up=give_up))
        if not ready and self.children.first_exited() is None and not self.stopping:
            self.say("warning: the relay or Flower is slow to answer")

    def supervise(self) -> int:
        """Until Ctrl-C (0) or a child exits on its own (1)."""
        exited = self.children.wait(lambda: self.stopping)
        if exited is not None and not self.stopping:
            code = exited.proc.returncode if exited.proc else "?"
            self.say(f"{exited.name} exited ({code}); stopping everything")
            return 1
        return 0

    def _stop_everything(self) -> None:
        """Worker, relay, Flower, then Redis, then PostgreSQL; each runs whatever the last did."""
        steps: list[tuple[str, Callable[[], object]]] = [
            ("worker, relay and Flower", lambda: self.children.stop_all(STOP_BOUNDS_S)),
        ]
        if self.redis is not None:
            steps.append(("Redis", self.redis.stop))
        pg = self.pg
        if pg is not None:
            steps.append(("PostgreSQL", lambda: pg.stop("fast")))
        failed = False
        for what, step in steps:
            try:
                step()
            except Exception as exc:
                failed = True
                self.say(f"could not stop {what}: {type(exc).__name__}: {exc}")
        self.state.remove_env()
        if not failed:
            leftovers.forget(self.state.root)
        self.state.unlock()


def _check_ports(wanted: dict[str, int]) -> None:
    for name, port in wanted.items():
        if port_in_use(port):
            raise CommandError(
                f"port {port} on 127.0.0.1 is already in use (wanted for {name}); "
                f"stop what listens there or pass --{name}-port")


def _wait_http(url: str, timeout_s: float, *, auth: tuple[str, str] | None = None,
               give_up: Callable[[], bool] = lambda: False) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not give_up():
        request = urllib.request.Request(url)
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False
