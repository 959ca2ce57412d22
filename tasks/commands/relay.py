"""`regnotify relay --host H --port P`: the tick relay and provider webhooks, served by uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from typing import TYPE_CHECKING

from tasks.commands.database_url import add_database_url_option, use_database_url
from tasks.exceptions import CommandError

if TYPE_CHECKING:
    from starlette.applications import Starlette

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


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


def prepare(args: argparse.Namespace) -> tuple[Starlette, str]:
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
    # A RelayConfigError is said by tasks/cli.py like any other.
    app = create_app(settings, local_only=args.local_only)
    # Codes printed on the relay's output (the customer page) only on loopback.
    app.state.loopback = is_loopback(host)
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
    # proxy_headers off: the customer page reads X-Forwarded-For itself, from
    # FORWARDED_ALLOW_IPS only (tasks.portal.limits.client_address).
    # log_config: uvicorn's own, with query strings (searches: phones,
    # e-mails) left out of the access log.
    uvicorn.run(app, host=host, port=args.port, log_level=args.log_level, server_header=False,
                proxy_headers=False, log_config=relay_log_config(),
                http=header_deadline_protocol(settings.relay_header_timeout_s))
    return 0
