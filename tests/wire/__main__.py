"""Run one wire in the foreground: ``python -m tests.wire twilio|resend --port P``.

The first line on stdout is the base URL (or, with ``--json``, one JSON
object with the URL and the credentials the wire accepts), flushed at once,
so a parent process can read it and start sending. Everything else goes to
stderr. SIGINT/SIGTERM stop the server; the final ``stats()`` are printed to
stderr as JSON. Knobs can also be changed while it runs, through
``/_wire/config`` (see ``RemoteWire``).

Examples::

    python -m tests.wire twilio --port 8031 --latency 0.05 --error-rate 0.1
    python -m tests.wire resend --port 8032 --max-rps 2 --script 'a@b.co=500,429:2,accept'
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from ._core import WireServer
from .resend_wire import DEFAULT_API_KEY, ResendWire
from .twilio_wire import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioWire


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be within 0..1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _statuses(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.wire",
        description="Run a fake Twilio or Resend API server in the foreground.",
    )
    parser.add_argument("provider", choices=("twilio", "resend"))
    parser.add_argument("--host", default="127.0.0.1", help="interface (default loopback)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--latency", type=_seconds, help="seconds before every answer")
    parser.add_argument("--error-rate", type=_rate, help="fraction of sends answered 5xx")
    parser.add_argument(
        "--error-statuses", type=_statuses, help="statuses for --error-rate (default 500,503)"
    )
    parser.add_argument("--retry-after", type=_seconds, help="Retry-After of 429s (default 1)")
    parser.add_argument("--max-rps", type=float, help="answer 429 above this many requests/s")
    parser.add_argument(
        "--timeout-after-accept",
        type=_seconds,
        help="accept, then stall this long before answering (client times out)",
    )
    parser.add_argument(
        "--timeout-after-accept-rate", type=_rate, help="fraction of sends that stall"
    )
    parser.add_argument("--drop-rate", type=_rate, help="fraction closed unanswered, not sent")
    parser.add_argument(
        "--drop-after-accept-rate", type=_rate, help="fraction accepted, then closed unanswered"
    )
    parser.add_argument(
        "--chaos-on-reads",
        action="store_true",
        default=None,
        help="apply errors/429/drops to GETs too",
    )
    parser.add_argument("--idempotency-ttl", type=_seconds, help="seconds a key is kept")
    parser.add_argument("--seed", type=int, help="seed for the chaos random generator")
    parser.add_argument(
        "--script",
        action="append",
        default=[],
        metavar="RECIPIENT=STEP[,STEP...]",
        help="per-recipient script (repeatable); RECIPIENT '*' matches anyone",
    )
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID, help="twilio only")
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN, help="twilio only")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="resend only")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON line (url, credentials) on start"
    )
    parser.add_argument(
        "--stats-interval",
        type=_seconds,
        default=0.0,
        help="print stats to stderr every this many seconds (0 = only at exit)",
    )
    return parser


_KNOBS = (
    "latency",
    "error_rate",
    "error_statuses",
    "retry_after",
    "max_rps",
    "timeout_after_accept",
    "timeout_after_accept_rate",
    "drop_rate",
    "drop_after_accept_rate",
    "chaos_on_reads",
    "idempotency_ttl",
)


def make_wire(args: argparse.Namespace) -> WireServer:
    """Build (not start) the wire the parsed arguments describe."""
    knobs: dict[str, Any] = {
        name: getattr(args, name) for name in _KNOBS if getattr(args, name) is not None
    }
    wire: WireServer
    if args.provider == "twilio":
        wire = TwilioWire(
            args.host,
            args.port,
            account_sid=args.account_sid,
            auth_token=args.auth_token,
            seed=args.seed,
            **knobs,
        )
    else:
        wire = ResendWire(args.host, args.port, api_key=args.api_key, seed=args.seed, **knobs)
    for spec in args.script:
        recipient, sep, steps = spec.partition("=")
        if not sep or not recipient.strip():
            raise ValueError(f"--script wants RECIPIENT=STEP[,STEP...], got {spec!r}")
        wire.script(recipient.strip(), [s for s in steps.split(",") if s.strip()])
    return wire


def _announcement(wire: WireServer) -> dict[str, Any]:
    info: dict[str, Any] = {"provider": wire.provider, "url": wire.url}
    if isinstance(wire, TwilioWire):
        info.update(account_sid=wire.account_sid, auth_token=wire.auth_token)
    elif isinstance(wire, ResendWire):
        info.update(api_key=wire.api_key)
    return info


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGINT/SIGTERM; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        wire = make_wire(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Handlers only set a flag: stopping the server from inside a signal
    # handler could deadlock on the lock the interrupted code holds.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        wire.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        info = _announcement(wire)
        print(json.dumps(info) if args.json else wire.url, flush=True)
        details = ", ".join(f"{k}={v}" for k, v in info.items() if k not in ("provider", "url"))
        print(
            f"{wire.provider} wire on {wire.url} ({details}); config {wire.config.to_dict()}; "
            "Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        interval = args.stats_interval or None
        # Event.wait with a timeout, not signal.pause(): it also wakes up for
        # the periodic stats, and signals still interrupt it promptly.
        while not stop.wait(interval):
            print(json.dumps(wire.stats()), file=sys.stderr, flush=True)
    finally:
        wire.stop()
        print(json.dumps({"final": wire.stats()}), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
