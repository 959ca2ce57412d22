"""Resolving the database URL for commands: --database-url, then DATABASE_URL."""

from __future__ import annotations

import argparse

from db.connection import check_ready
from db.errors import DatabaseUnavailable, check_database_url
from tasks.settings import get_settings


def add_database_url_option(parser: argparse.ArgumentParser) -> None:
    """Add --database-url to a subcommand."""
    parser.add_argument("--database-url", metavar="URL",
                        help="PostgreSQL URL (default: $DATABASE_URL)")


def given_database_url(args: argparse.Namespace) -> str | None:
    """--database-url, else DATABASE_URL, else None."""
    return getattr(args, "database_url", None) or get_settings().database_url


def resolve_database_url(args: argparse.Namespace) -> str:
    """The URL to use, or a clear error naming both ways to give one (or what is wrong with it)."""
    url = given_database_url(args)
    if not url:
        raise DatabaseUnavailable("no database: set DATABASE_URL or pass --database-url")
    check_database_url(url)
    return url


def use_database_url(args: argparse.Namespace) -> str:
    """Resolve the URL, check the database answers and is migrated, and make it the one
    the tasks' engine uses in this process."""
    import os

    from tasks.database import reset_engine

    url = resolve_database_url(args)
    check_ready(url)
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    reset_engine()
    return url
