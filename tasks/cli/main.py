"""The `regnotify` command: one subcommand per module under tasks/cli/."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from db.connector import family_errors
from db.errors import RegnotifyError
from tasks.cli import COMMANDS, dev_token


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="regnotify",
        description="Debounced SMS and e-mail notifications for vehicle registration stages.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    dev_token.register(sub)  # a development aid, listed last
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # A driver's error met mid-command (the server went away, a table is
        # missing) is said the same way as when a command's own check finds it.
        with family_errors():
            return int(args.handler(args) or 0)
    except RegnotifyError as exc:
        return _report(args.command, exc)
    except KeyboardInterrupt:
        return 130


def _report(command: str, error: RegnotifyError) -> int:
    """The one place an error becomes a line on stderr and an exit status."""
    line = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    print(f"regnotify {command}: {line}", file=sys.stderr)
    return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
