"""`regnotify up`: the whole stack on this machine, in the foreground, until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.exceptions import CommandError, EmbeddedPostgresError

if TYPE_CHECKING:
    from tasks.local.child_processes import ChildProcesses
    from tasks.local.embedded_postgres import EmbeddedPostgres
    from tasks.local.embedded_redis import EmbeddedRedis
    from tasks.local.up_state import UpState

DEFAULT_PORTS = {"postgres": 54329, "redis": 63790, "relay": 8000, "flower": 5555}

#: How long each child gets after SIGTERM before SIGKILL, in stop order:
#: the worker finishes what it holds while the broker and database are up.
STOP_BOUNDS_S = {"worker": 10.0, "relay": 5.0, "flower": 3.0}


#: Set in the children's environment: `regnotify worker` run by `up`.
UP_CHILD_ENV = "REGNOTIFY_UNDER_UP"


def _flower_noise(line: str) -> bool:
    """Flower's "Inspect method stats failed" lines: it asks before the worker answers.

    Expected at every start; whether the worker is alive shows in the
    worker's own lines and in Flower's page.
    """
    return "Inspect method" in line and "failed" in line


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: use 1-65535")
    return port


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("up", help="run everything locally (embedded PostgreSQL and Redis, "
                                  "worker, relay, Flower) until Ctrl-C")
    p.add_argument("--state-dir", default=os.environ.get("REGNOTIFY_STATE_DIR", ".regnotify"),
                   help="where data and generated secrets are kept (default: ./.regnotify)")
    for name, port in DEFAULT_PORTS.items():
        # None: not given, so a flag that cannot apply is refused, not ignored.
        p.add_argument(f"--{name}-port", type=port_number, default=None, metavar="PORT",
                       help=f"{name} port on 127.0.0.1 (default {port})")
    p.add_argument("--concurrency", type=int, default=8, help="worker threads (default 8)")
    p.set_defaults(handler=run)


def _check_ports(wanted: dict[str, int]) -> None:
    from tasks.local.embedded_postgres import port_in_use

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
            import base64

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


def run(args: argparse.Namespace) -> int:
    """Start, supervise, and on Ctrl-C stop everything."""
    from db.connection import redacted
    from db.connector import check_database_url
    from db.migrations import migrate
    from tasks.local import leftovers
    from tasks.local.child_processes import ChildProcesses
    from tasks.local.embedded_postgres import (
        EmbeddedPostgres,
        EmbeddedPostgresError,
        resolve_bindir,
    )
    from tasks.local.embedded_redis import EmbeddedRedis, EmbeddedRedisError, resolve_redis_server
    from tasks.local.server_binaries import chosen_source
    from tasks.local.up_state import UpState
    from tasks.providers.registry import banner_line
    from tasks.settings import Settings, refuse_placeholders, refuse_unsafe_settings

    # The environment and .env only: up.env is what an `up` wrote for other
    # commands, never a setting for the next `up` (it may be a dead one's).
    settings = Settings(_env_file=".env")  # type: ignore[call-arg]
    refuse_placeholders(settings)
    refuse_unsafe_settings(settings)
    if settings.database_url:
        check_database_url(settings.database_url)  # before anything starts
    providers = banner_line(settings)  # half-filled credentials refuse to start
    state = UpState(Path(args.state_dir).resolve())
    embedded_pg = not settings.database_url
    embedded_redis = not settings.celery_broker_url
    given = {name: getattr(args, f"{name}_port") for name in DEFAULT_PORTS}
    for name, setting, embedded in (("postgres", "DATABASE_URL", embedded_pg),
                                    ("redis", "CELERY_BROKER_URL", embedded_redis)):
        if given[name] is not None and not embedded:
            raise CommandError(
                f"--{name}-port is for the {name} that up starts itself, but {setting} is "
                f"set, so up uses that server: drop --{name}-port or unset {setting}")
    port = {name: given[name] or default for name, default in DEFAULT_PORTS.items()}
    ports = {"relay": port["relay"], "flower": port["flower"]}
    if embedded_pg:
        ports["postgres"] = port["postgres"]
    if embedded_redis:
        ports["redis"] = port["redis"]
    # Find both servers' binaries before starting anything, so a missing one
    # is reported at once, not after PostgreSQL started and migrated.
    if embedded_pg or embedded_redis:
        chosen_source()  # a mistyped REGNOTIFY_EMBEDDED_BINARIES, said as such
    try:
        pg_binaries = resolve_bindir() if embedded_pg else None
    except EmbeddedPostgresError as exc:
        raise CommandError(f"{exc} (or set DATABASE_URL to use your own server)") from None
    try:
        redis_binaries = resolve_redis_server() if embedded_redis else None
    except EmbeddedRedisError as exc:
        raise CommandError(f"{exc} (or set CELERY_BROKER_URL to use your own broker)") from None
    children = ChildProcesses()
    # One `up` per state folder, held until this `up` ends; before the port
    # check, so a second `up` hears why rather than "port in use".
    state.lock()
    try:
        pg = (EmbeddedPostgres(data_dir=state.postgres_dir, port=port["postgres"],
                               bindir=pg_binaries.path) if pg_binaries is not None else None)
        _clear_leftovers(state, pg, children)
        _check_ports(ports)
        state.ensure()
        made = state.secrets()
    except BaseException:
        state.unlock()
        raise
    relay_token = (settings.relay_token.get_secret_value() if settings.relay_token
                   else made.relay_token)
    flower_auth = (settings.flower_basic_auth.get_secret_value() if settings.flower_basic_auth
                   else made.flower_basic_auth)
    # Kept like Flower's password: portal sessions survive a restart, and the
    # relay's /api accepts what the portal and `regnotify dev-token` sign.
    session_secret = (settings.session_secret.get_secret_value() if settings.session_secret
                      else made.session_secret)

    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    redis_server: EmbeddedRedis | None = None
    status = 0
    try:
        if pg is not None and pg_binaries is not None:
            children.say("up", f"starting PostgreSQL in {state.postgres_dir} "
                               f"({pg_binaries.describe()}) ...")
            if pg.bindir != pg_binaries.path:
                children.say("up", f"running a copy in {pg.bindir}: the postgres user "
                                   f"cannot read {pg_binaries.path}")
            if not pg.cron:
                children.say("up", "no pg_cron for these binaries: the relay's own ticker "
                                   "drives deliveries (RELAY_SELF_TICK=auto)")
            pg.start()
            database_url = pg.url
        else:
            database_url = str(settings.database_url)
        children.say("up", f"database {redacted(database_url)}")
        migrate(database_url, on_applied=lambda f, _n: children.say("up", f"applied {f}"))
        if redis_binaries is not None:
            children.say("up", f"starting Redis ({redis_binaries.describe()}) ...")
            redis_server = EmbeddedRedis(port=port["redis"], data_dir=state.redis_dir,
                                         binary=redis_binaries.path)
            redis_server.start()
            leftovers.record(state.root, {"redis": redis_server.pid})
            broker = redis_server.url
        else:
            broker = str(settings.celery_broker_url)
        # Flower reads FLOWER_BASIC_AUTH from here: on its command line the
        # password would show in `ps` to every user of the machine.
        env = {**os.environ, "DATABASE_URL": database_url, "CELERY_BROKER_URL": broker,
               "RELAY_TOKEN": relay_token, "FLOWER_BASIC_AUTH": flower_auth,
               "SESSION_SECRET": session_secret,
               "PORTAL_URL": settings.portal_url or f"http://127.0.0.1:{port['relay']}/portal",
               "PYTHONUNBUFFERED": "1", UP_CHILD_ENV: "1",
               # The worker's pool follows its threads (tasks/worker/worker_budget.py);
               # the setting says the same, for anything that reads it.
               "WORKER_CONCURRENCY": str(args.concurrency)}
        if os.geteuid() == 0:
            children.say("up", "running as root: fine for this local stack (Celery's warning "
                               "about it is silenced here), not for production")
        state.write_env({k: env[k] for k in
                         ("DATABASE_URL", "CELERY_BROKER_URL", "RELAY_TOKEN", "FLOWER_BASIC_AUTH",
                          "PORTAL_URL", "SESSION_SECRET")})
        py = sys.executable
        for name, argv in (
            ("worker", [py, "-m", "tasks.cli", "worker", "-c", str(args.concurrency)]),
            ("relay", [py, "-m", "tasks.cli", "relay", "--host", "127.0.0.1",
                       "--port", str(port["relay"])]),
            ("flower", [py, "-m", "celery", "-A", "tasks", "flower",
                        f"--port={port['flower']}", "--address=127.0.0.1"]),
        ):
            if stopping:
                break
            children.start(name, argv, env, drop=_flower_noise if name == "flower" else None)
            leftovers.record(state.root, {**children.pids(), **(
                {"redis": redis_server.pid} if redis_server is not None else {})})
        relay_url = f"http://127.0.0.1:{port['relay']}"
        flower_url = f"http://127.0.0.1:{port['flower']}"
        user, _, password = flower_auth.partition(":")
        login_kept_in = ("FLOWER_BASIC_AUTH in .env or the environment"
                         if settings.flower_basic_auth else state.root / "secrets.json")
        ready = not stopping and (
            _wait_http(f"{relay_url}/healthz", 60, give_up=lambda: stopping)
            and _wait_http(flower_url, 60, auth=(user, password), give_up=lambda: stopping))
        if not ready and children.first_exited() is None and not stopping:
            children.say("up", "warning: the relay or Flower is slow to answer")
        if not stopping:
            for line in (
                "regnotify is up",
                f"  relay   {relay_url}  (POST /tick, GET /healthz, /metrics, /docs)",
                f"  portal  {env['PORTAL_URL']}  (customers sign in with a code printed here)",
                "  api     a token for /api: `regnotify dev-token --customer PHONE` "
                "(or --staff EMAIL) in this folder",
                f"  flower  {flower_url}  user {user}  password {password}",
                f"          (the login is kept in {login_kept_in})",
                f"  database {redacted(database_url)}",
                f"  broker  {broker}",
                f"  providers  {providers}",
                f"  coordination  {_coordination(broker)}  (rate limits, tick, wake-up)",
                "  try `regnotify demo` in another terminal; Ctrl-C stops everything",
            ):
                children.say("up", line)
        exited = children.wait(lambda: stopping)
        if exited is not None and not stopping:
            code = exited.proc.returncode if exited.proc else "?"
            children.say("up", f"{exited.name} exited ({code}); stopping everything")
            status = 1
    finally:
        # Never raises (ChildProcesses.say drops lines once the output is gone).
        children.say("up", "stopping ...")
        _stop_everything(children, redis_server, pg, state)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        children.say("up", "stopped")
    return status


def _stop_everything(children: ChildProcesses, redis_server: EmbeddedRedis | None,
                     pg: EmbeddedPostgres | None, state: UpState) -> None:
    """Worker, relay, Flower, then Redis and PostgreSQL; each step runs whatever the last did."""
    from tasks.local import leftovers

    steps: list[tuple[str, Callable[[], object]]] = [
        ("worker, relay and Flower", lambda: children.stop_all(STOP_BOUNDS_S)),
    ]
    if redis_server is not None:
        steps.append(("Redis", redis_server.stop))
    if pg is not None:
        steps.append(("PostgreSQL", lambda: pg.stop("fast")))
    failed = False
    for what, step in steps:
        try:
            step()
        except Exception as exc:
            failed = True
            children.say("up", f"could not stop {what}: {type(exc).__name__}: {exc}")
    state.remove_env()
    if not failed:
        leftovers.forget(state.root)
    state.unlock()


def _clear_leftovers(state: UpState, pg: EmbeddedPostgres | None,
                     children: ChildProcesses) -> None:
    """Stop what an `up` that ended without stopping left here, or say what is left and how."""
    from tasks.local import leftovers

    found = leftovers.find(state.root)
    if found:
        names = ", ".join(f"{item.name} (pid {item.pid})" for item in found)
        children.say("up", f"an earlier up in {state.root} did not stop {names}: stopping "
                           "them now")
        still = leftovers.stop(found)
        if still:
            raise CommandError(
                "still running from an earlier up: "
                + ", ".join(f"{i.name} (pid {i.pid})" for i in still)
                + "; stop them with: " + "; ".join(i.how_to_stop() for i in still))
    leftovers.forget(state.root)
    if pg is not None and pg.initialised() and pg.running():
        # We hold the folder's lock, so no live `up` owns this server.
        children.say("up", f"an earlier up left PostgreSQL running in {pg.data_dir}: "
                           "stopping it")
        try:
            pg.stop("fast")
        except EmbeddedPostgresError as exc:
            raise CommandError(
                f"PostgreSQL from an earlier up still runs in {pg.data_dir} and would not stop "
                f"({exc}); stop it with: pg_ctl -D {pg.data_dir} stop -m fast") from None
    state.remove_env()


def _coordination(broker: str) -> str:
    """Where the workers share rate limits, the tick marker and the wake-up."""
    from tasks.coordination.broker_redis import coordination_backend
    from tasks.settings import Settings

    return coordination_backend(Settings(celery_broker_url=broker))
