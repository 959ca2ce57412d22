"""`regnotify relay --host H --port P [--workers N]`: the tick relay, provider webhooks, the
API and the customer page, served by uvicorn.

With several workers, uvicorn's supervisor shares one listening socket
among N processes; each builds its app from what this command checked
(WORKER_ENV), and they elect the one that LISTENs and ticks
(tasks/relay/leader.py). See docs/relay-performance.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import secrets
import sys
from typing import TYPE_CHECKING, Any

from tasks.cli.database_url import add_database_url_option, use_database_url
from tasks.exceptions import CommandError

if TYPE_CHECKING:
    from starlette.applications import Starlette

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: Workers by default at most: past this the database, not the relay, is the limit.
MAX_DEFAULT_WORKERS = 4
#: What the supervisor hands its workers (JSON): the checked options and the group.
WORKER_ENV = "REGNOTIFY_RELAY_WORKER"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("relay", help="serve POST /tick, /healthz and the provider webhooks")
    add_database_url_option(p)
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port to bind (default {DEFAULT_PORT})")
    p.add_argument("--local-only", action="store_true",
                   help="run without RELAY_TOKEN; binds a loopback address only")
    p.add_argument("--no-listen", action="store_true",
                   help="do not LISTEN on notification_tick (default: RELAY_LISTEN, on)")
    p.add_argument("--self-tick", action="store_true",
                   help="tick every RELAY_TICK_INTERVAL_S even when a pg_cron job exists "
                        "(default: only when there is none)")
    p.add_argument("--tick-interval", type=float, metavar="SECONDS",
                   help="own ticker period (default: RELAY_TICK_INTERVAL_S, 5)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes (default: RELAY_WORKERS, else one per core but one, "
                        f"up to {MAX_DEFAULT_WORKERS}; 1 when sign-in codes are printed here)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(handler=run)


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the relay reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def console_sign_in(settings: Any, loopback: bool) -> bool:
    """Whether the page's codes would be printed by this process (tasks/portal/signin.py):
    they live in its memory, so every check must reach the process that sent the code."""
    supabase = bool(settings.supabase_url and settings.supabase_anon_key)
    return loopback and not supabase and not settings.twilio_verify_service_sid


def default_workers() -> int:
    """One per core this process may run on but one, at most MAX_DEFAULT_WORKERS.

    The core left over is for what usually shares a small host with the relay
    (PostgreSQL, Redis, a Celery worker): on 2 cores with the database beside
    it, two relay workers answered `/api/me` at 0.21 of the static floor's
    rate and one at 0.33-0.38 (bench.api, docs/relay-performance.md).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores - 1, MAX_DEFAULT_WORKERS))


def choose_workers(args: argparse.Namespace, settings: Any, host: str) -> int:
    """--workers, else RELAY_WORKERS, else the host's default; refuses what cannot work."""
    asked = args.workers if args.workers is not None else settings.relay_workers
    if asked is not None and asked < 1:
        raise CommandError("--workers must be 1 or more")
    console = console_sign_in(settings, is_loopback(host))
    if asked is None:
        return 1 if console else default_workers()
    if asked > 1 and console:
        raise CommandError(
            f"--workers {asked}: the customer page's sign-in codes are printed and kept by one "
            "process here; run --workers 1, or sign in through Twilio Verify or Supabase Auth "
            "(TWILIO_VERIFY_SERVICE_SID, or SUPABASE_URL and SUPABASE_ANON_KEY)")
    return asked


def prepare(args: argparse.Namespace, *, group: int | None = None) -> tuple[Starlette, str]:
    """Check the configuration and build the app; returns it with the host to bind."""
    from tasks.settings import get_settings, refuse_placeholders, refuse_unsafe_settings

    settings = get_settings()
    refuse_placeholders(settings, ("relay_token",))
    refuse_unsafe_settings(settings)
    has_token = bool(settings.relay_token and settings.relay_token.get_secret_value())
    if not has_token and not args.local_only:
        raise CommandError(
            "RELAY_TOKEN is not set: set it, or pass --local-only to serve loopback only")
    if args.tick_interval is not None and args.tick_interval <= 0:
        raise CommandError("--tick-interval must be positive")
    use_database_url(args)
    host = args.host
    if args.local_only and not is_loopback(host):
        print(f"regnotify relay: --local-only binds {DEFAULT_HOST}, not {host}", file=sys.stderr)
        host = DEFAULT_HOST

    from tasks.relay import create_app

    updates: dict[str, object] = {}
    if args.no_listen:
        updates["relay_listen"] = False
    if args.self_tick:
        updates["relay_self_tick"] = "on"
    if args.tick_interval is not None:
        updates["relay_tick_interval_s"] = args.tick_interval
    settings = get_settings().model_copy(update=updates)
    # A RelayConfigError is said by tasks/cli/main.py like any other.
    # Codes printed on the relay's output (the customer page) only on loopback.
    app = create_app(settings, local_only=args.local_only, group=group, loopback=is_loopback(host))
    return app, host


def run(args: argparse.Namespace) -> int:
    """Serve until stopped (SIGINT or SIGTERM: uvicorn shuts down gracefully)."""
    import uvicorn

    from tasks.log_hygiene import relay_log_config
    from tasks.relay.http_protocol import header_deadline_protocol

    app, host = prepare(args)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = app.state.relay.settings
    workers = choose_workers(args, settings, host)
    # proxy_headers off: the customer page reads X-Forwarded-For itself, from
    # FORWARDED_ALLOW_IPS only (tasks.portal.limits.client_address).
    # log_config: uvicorn's own, with query strings (searches: phones,
    # e-mails) left out of the access log.
    if workers == 1:
        uvicorn.run(app, host=host, port=args.port, log_level=args.log_level,
                    server_header=False, proxy_headers=False, log_config=relay_log_config(),
                    http=header_deadline_protocol(settings.relay_header_timeout_s))
        return 0
    # Checked above; each worker builds its own app (nothing is shared but the socket).
    del app
    if not (settings.session_secret and settings.session_secret.get_secret_value()):
        # A loopback relay signs sessions with a key of its own: one for all
        # the workers, or a session made by one would be refused by the next.
        os.environ["SESSION_SECRET"] = secrets.token_urlsafe(32)
    os.environ[WORKER_ENV] = json.dumps({
        "database_url": os.environ.get("DATABASE_URL"), "local_only": args.local_only,
        "no_listen": args.no_listen, "self_tick": args.self_tick,
        "tick_interval": args.tick_interval, "host": host, "log_level": args.log_level,
        # The election's key: this relay's workers, no other relay's.
        "group": secrets.randbelow(2**31 - 2) + 1,
    })
    print(f"regnotify relay: {workers} workers on {host}:{args.port}", file=sys.stderr)
    uvicorn.run("tasks.cli.relay:worker_app", factory=True, workers=workers, host=host,
                port=args.port, log_level=args.log_level, server_header=False,
                proxy_headers=False, log_config=relay_log_config(),
                http="tasks.relay.http_protocol:HeaderDeadlineProtocol")
    return 0


def worker_app() -> Starlette:
    """One worker's app (uvicorn calls this in each worker process it starts)."""
    from tasks.relay.http_protocol import HeaderDeadlineProtocol
    from tasks.settings import get_settings

    given = json.loads(os.environ[WORKER_ENV])
    logging.basicConfig(level=given["log_level"].upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = argparse.Namespace(
        database_url=given["database_url"], local_only=given["local_only"],
        no_listen=given["no_listen"], self_tick=given["self_tick"],
        tick_interval=given["tick_interval"], host=given["host"])
    app, _ = prepare(args, group=int(given["group"]))
    HeaderDeadlineProtocol.header_timeout_s = get_settings().relay_header_timeout_s
    return app
