"""What quiet hours cost the claim: due rows closed per second with quiet hours off,
on but outside the window, and on with every text held (the window covers "now").

`python -m bench.quiet_hours_claim [ROWS]` prints one JSON object. Two claimers,
batches of 500, best of three drains each, on a private cluster.
"""

from __future__ import annotations

import json
import sys

import psycopg

from bench import workload
from bench.claim import drain
from bench.stack import private_stack


def _local(offset: str) -> str:
    return f"(now() AT TIME ZONE 'America/Chicago' + interval '{offset}')::time"


#: quiet_hours_channels, start, end (SQL expressions, America/Chicago) for each case.
CASES = {
    "off": ("{}", "'21:00'", "'08:00'"),
    "on_outside_window": ("{sms}", _local("2 hours"), _local("3 hours")),
    "on_all_held": ("{sms}", _local("-1 hour"), _local("3 hours")),
}


def measure(url: str, rows: int, repeats: int = 3) -> dict[str, float]:
    """Best rows/s per case."""
    figures: dict[str, float] = {}
    for name, (channels, start, end) in CASES.items():
        best = 0.0
        for _ in range(repeats):
            workload.fresh(url, rows, due=rows)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"UPDATE notification_config SET quiet_hours_channels = %s, "
                             f"quiet_hours_start = {start}, quiet_hours_end = {end}",
                             (channels,))
            done, seconds = drain(url, claimers=2, batch=500)
            if done != rows:
                raise RuntimeError(f"claimed {done} of {rows}")
            best = max(best, rows / seconds)
        figures[f"claim_rows_per_s_{name}"] = round(best)
        with psycopg.connect(url, autocommit=True) as conn:
            held = conn.execute("SELECT count(*) FROM registration_notifications "
                                "WHERE hold_reason IS NOT NULL").fetchone()
        figures[f"held_{name}"] = held[0] if held else 0
    return figures


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    rows = int(args[0]) if args else 20_000
    with private_stack(durable=False) as stack:
        figures = measure(stack.pg.url, rows)
    print(json.dumps({"rows": rows, **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
