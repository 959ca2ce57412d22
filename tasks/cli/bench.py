"""`regnotify bench`: the pipeline benchmark, on a private stack it starts and stops itself.

The benchmark code (bench/) lives in the source tree, not in the wheel. It
runs as `python -m bench` in a child process with these arguments: the
application never imports its benchmark (the arrow would run back up).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

from tasks.exceptions import CommandError

DEFAULT_OUT = Path("bench") / "results"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser(
        "bench",
        help="measure the pipeline (trigger, claim, sends, latency, memory) on a private stack",
    )
    add_options(p)
    p.set_defaults(handler=run)


def add_options(p: argparse.ArgumentParser) -> None:
    """The benchmark's options, shared with `python -m bench`, which parses them again."""
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="a smaller run, under three minutes on two cores")
    size.add_argument("--smoke", action="store_true",
                      help="a tiny run that only checks the benchmark works (CI)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help=f"where the JSON file and the PNG chart go (default: {DEFAULT_OUT})")
    p.add_argument("--processes", type=int, metavar="N",
                   help="worker processes for the send scenarios (default: the plan's)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="threads per worker process (default: the plan's)")


def run(args: argparse.Namespace) -> int:
    """Start `python -m bench` with the same choices; its exit status is ours."""
    try:
        found = importlib.util.find_spec("bench.runner") is not None
    except ImportError:
        found = False
    if not found:  # bench/ is not in the wheel
        raise CommandError(
            "regnotify bench runs from a source checkout, not an installed package: "
            "in the checkout run `scripts/setup`, then `.venv/bin/regnotify bench`")
    argv = ["--out", str(args.out)]
    argv += ["--quick"] if args.quick else ["--smoke"] if args.smoke else []
    argv += ["--processes", str(args.processes)] if args.processes else []
    argv += ["--threads", str(args.threads)] if args.threads else []
    return subprocess.call([sys.executable, "-m", "bench", *argv])
