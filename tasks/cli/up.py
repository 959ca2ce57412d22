"""`regnotify up`: the whole stack on this machine, in the foreground, until Ctrl-C.

This module reads the arguments and the settings, checks them before anything
starts, and prints; the stack itself is tasks/local/: the supervisor
(supervisor.py: servers, children, stop order) and the children's environment
(child_env.py). The local stack is imported when `up` runs, not when the CLI
parses its arguments.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.exceptions import CommandError

if TYPE_CHECKING:
    from tasks.local.child_env import StackSecrets
    from tasks.local.supervisor import StackPlan
    from tasks.settings import Settings

DEFAULT_PORTS = {"postgres": 54329, "redis": 63790, "relay": 8000, "flower": 5555}


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


def _settings() -> Settings:
    """The settings `up` runs with, refused before anything starts when unusable."""
    from db.connector import check_database_url
    from tasks.settings import Settings, refuse_placeholders, refuse_unsafe_settings

    # The environment and .env only: up.env is what an `up` wrote for other
    # commands, never a setting for the next `up` (it may be a dead one's).
    settings = Settings(_env_file=".env")  # type: ignore[call-arg]
    refuse_placeholders(settings)
    refuse_unsafe_settings(settings)
    if settings.database_url:
        check_database_url(settings.database_url)  # before anything starts
    return settings


def _plan(args: argparse.Namespace, settings: Settings) -> StackPlan:
    """What to run: the ports and the servers' binaries, every flag checked against the settings."""
    from tasks.local.embedded_postgres import EmbeddedPostgresError, resolve_bindir
    from tasks.local.embedded_redis import EmbeddedRedisError, resolve_redis_server
    from tasks.local.server_binaries import chosen_source
    from tasks.local.supervisor import StackPlan
    from tasks.local.up_state import UpState

    embedded_pg = not settings.database_url
    embedded_redis = not settings.celery_broker_url
    given = {name: getattr(args, f"{name}_port") for name in DEFAULT_PORTS}
    for name, setting, embedded in (("postgres", "DATABASE_URL", embedded_pg),
                                    ("redis", "CELERY_BROKER_URL", embedded_redis)):
        if given[name] is not None and not embedded:
            raise CommandError(
                f"--{name}-port is for the {name} that up starts itself, but {setting} is "
                f"set, so up uses that server: drop --{name}-port or unset {setting}")
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
    return StackPlan(
        state=UpState(Path(args.state_dir).resolve()),
        ports={name: given[name] or default for name, default in DEFAULT_PORTS.items()},
        pg_binaries=pg_binaries, redis_binaries=redis_binaries,
        database_url=str(settings.database_url) if settings.database_url else None,
        broker_url=str(settings.celery_broker_url) if settings.celery_broker_url else None,
        concurrency=args.concurrency,
    )


def run(args: argparse.Namespace) -> int:
    """Start, supervise, and on Ctrl-C stop everything."""
    from tasks.local.child_env import StackSecrets, child_environment, up_env
    from tasks.local.child_processes import ChildProcesses
    from tasks.local.supervisor import LocalStack
    from tasks.providers.registry import banner_line

    settings = _settings()
    providers = banner_line(settings)  # half-filled credentials refuse to start
    plan = _plan(args, settings)
    stack = LocalStack(plan, ChildProcesses())
    secrets = StackSecrets.choose(settings, stack.claim(), plan.state.root)
    status = 0
    with stack.running():
        database_url, broker = stack.start_servers()
        env = child_environment(settings, secrets, database_url=database_url, broker=broker,
                                relay_port=plan.ports["relay"], concurrency=args.concurrency)
        if os.geteuid() == 0:
            stack.say("running as root: fine for this local stack (Celery's warning "
                      "about it is silenced here), not for production")
        plan.state.write_env(up_env(env))
        stack.start_children(env)
        relay_url = f"http://127.0.0.1:{plan.ports['relay']}"
        flower_url = f"http://127.0.0.1:{plan.ports['flower']}"
        user, _, password = secrets.flower_basic_auth.partition(":")
        stack.wait_ready(relay_url, flower_url, (user, password))
        if not stack.stopping:
            for line in _banner(relay_url, flower_url, env["PORTAL_URL"], secrets,
                                database_url, broker, providers):
                stack.say(line)
        status = stack.supervise()
    return status


def _banner(relay_url: str, flower_url: str, portal_url: str, secrets: StackSecrets,
            database_url: str, broker: str, providers: str) -> list[str]:
    """What `up` prints once everything answers: where each part is and how to sign in."""
    from db.connection import redacted

    user, _, password = secrets.flower_basic_auth.partition(":")
    return [
        "regnotify is up",
        f"  relay   {relay_url}  (POST /tick, GET /healthz, /metrics, /docs)",
        f"  portal  {portal_url}  (customers sign in with a code printed here)",
        "  api     a token for /api: `regnotify dev-token --customer PHONE` "
        "(or --staff EMAIL) in this folder",
        f"  flower  {flower_url}  user {user}  password {password}",
        f"          (the login is kept in {secrets.flower_login_kept_in})",
        f"  database {redacted(database_url)}",
        f"  broker  {broker}",
        f"  providers  {providers}",
        f"  coordination  {_coordination(broker)}  (rate limits, tick, wake-up)",
        "  try `regnotify demo` in another terminal; Ctrl-C stops everything",
    ]


def _coordination(broker: str) -> str:
    """Where the workers share rate limits, the tick marker and the wake-up."""
    from tasks.coordination.stores import coordination_backend
    from tasks.settings import Settings

    return coordination_backend(Settings(celery_broker_url=broker))
