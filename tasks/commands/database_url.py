"""Resolving the database URL for commands: --database-url, then DATABASE_URL."""

from __future__ import annotations

import argparse

from tasks.commands.errors import CommandError
from tasks.settings import get_settings


def add_database_url_option(parser: argparse.ArgumentParser) -> None:
    """Add --database-url to a subcommand."""
    parser.add_argument("--database-url", metavar="URL",
                        help="PostgreSQL URL (default: $DATABASE_URL)")


def resolve_database_url(args: argparse.Namespace) -> str:
    """The URL to use, or a clear error naming both ways to give one."""
    url = getattr(args, "database_url", None) or get_settings().database_url
    if not url:
        raise CommandError("no database: set DATABASE_URL or pass --database-url")
    return url


def use_database_url(args: argparse.Namespace) -> str:
    """Resolve the URL and make it the one the tasks' engine uses in this process."""
    import os

    from tasks.database import reset_engine

    url = resolve_database_url(args)
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    reset_engine()
    return url
