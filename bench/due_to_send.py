"""Latency from a row's send_after to the provider request, with the relay's wake-up.

Staggered stage changes with a short debounce window; one initial tick, no
cron and no polling: every message must be started by a wake-up. Prints
p50 / p99 / max of (wire request time - send_after) in seconds.

    python -m bench.due_to_send [--messages 200] [--window 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import psycopg

from bench.stack import Stack, private_stack
from tests.worker_process import WorkerProcess, regnotify_worker_argv


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def measure(messages: int, window_s: float, spread_s: float, *, stack: Stack | None = None,
            concurrency: int = 8) -> dict[str, float]:
    """Run the scenario and return the figures.

    With `stack`, run on it (its tables and wire ledgers must be empty);
    otherwise on a private stack of its own.
    """
    if stack is None:
        with private_stack() as own:
            return measure(messages, window_s, spread_s, stack=own, concurrency=concurrency)
    return _measure(stack, messages, window_s, spread_s, concurrency)


def _measure(stack: Stack, messages: int, window_s: float, spread_s: float,
             concurrency: int) -> dict[str, float]:
    from tasks.broker.app import create_app

    app = create_app()
    app.conf.broker_url = stack.redis.url
    worker = WorkerProcess(regnotify_worker_argv(concurrency), stack.env,
                           stack.root / "due-to-send-worker.log")
    worker.start(app)
    try:
        with psycopg.connect(stack.pg.url, autocommit=True) as conn:
            conn.execute(
                "UPDATE notification_config SET debounce_window = make_interval(secs => %s),"
                " max_wait = interval '10 minutes'", (window_s,))
            ids = [r[0] for r in conn.execute(
                "INSERT INTO registrations (customer_name, customer_phone, notification_pref)"
                " SELECT 'Bench ' || i, '+1555' || lpad(i::text, 7, '0'), 'sms'"
                " FROM generate_series(1, %s) AS i RETURNING id", (messages,))]
            app.send_task("process_notification_queue")
            gap = spread_s / messages
            for reg in ids:
                conn.execute("UPDATE registrations SET current_stage = 'submitted_to_dmv'"
                             " WHERE id = %s", (reg,))
                time.sleep(gap)
            # One tick after the last change; from here only wake-ups run.
            app.send_task("process_notification_queue")
            deadline = time.monotonic() + window_s + 120
            while stack.twilio.accepted_count() < messages and time.monotonic() < deadline:
                time.sleep(0.2)
            due = {row[0]: row[1].timestamp() for row in conn.execute(
                "SELECT r.customer_phone, q.send_after FROM notification_queue q"
                " JOIN registrations r ON r.id = q.registration_id")}
    finally:
        worker.stop()
    sends = stack.twilio.sends()
    if len(sends) < messages:
        print(worker.log()[-3000:], file=sys.stderr)
    delays = [s.received_at - due[s.to] for s in sends if s.to in due]
    if len(delays) < messages:
        print(f"warning: only {len(delays)} of {messages} sent", file=sys.stderr)
    return {
        "messages": len(delays),
        "p50_due_to_send_s": round(percentile(delays, 0.5), 3),
        "p99_due_to_send_s": round(percentile(delays, 0.99), 3),
        "max_due_to_send_s": round(max(delays), 3),
        "mean_due_to_send_s": round(statistics.fmean(delays), 3),
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--window", type=float, default=2.0, help="debounce window, seconds")
    p.add_argument("--spread", type=float, default=20.0, help="seconds over which changes arrive")
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    figures = measure(args.messages, args.window, args.spread)
    for key, value in figures.items():
        print(f"{key:>22}: {value}")
    line = json.dumps(figures)
    if args.out:
        args.out.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
