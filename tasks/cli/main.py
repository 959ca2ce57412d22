"""The `regnotify` command: one subcommand per module under tasks/cli/."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import psycopg
from sqlalchemy.exc import SQLAlchemyError

from db.errors import RegnotifyError, database_problem
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
        return int(args.handler(args) or 0)
    except RegnotifyError as exc:
        return _report(args.command, exc)
    except (SQLAlchemyError, psycopg.Error) as exc:
        # Met mid-command (the server went away, a table is missing): said
        # the same way as when a command's own check finds it.
        problem = database_problem(exc)
        if problem is None:
            raise
        return _report(args.command, problem)
    except KeyboardInterrupt:
        return 130


def _report(command: str, error: RegnotifyError) -> int:
    """The one place an error becomes a line on stderr and an exit status."""
    line = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    print(f"regnotify {command}: {line}", file=sys.stderr)
    return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
