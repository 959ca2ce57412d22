"""The database a command works on (--database-url, then DATABASE_URL) and the
registration id it is given."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from db.connection import check_ready
from db.connector import check_database_url
from db.errors import DatabaseUnavailable
from tasks.exceptions import CommandError
from tasks.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy import Connection


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
        from tasks.cli.up_here import where_up_runs

        raise DatabaseUnavailable(
            f"no database: {where_up_runs('DATABASE_URL', '--database-url')}")
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


def parse_registration_id(value: str) -> str:
    """The canonical form of a registration uuid, or a one-line error."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise CommandError(f"not a registration id (a uuid): {value!r}") from None


@contextmanager
def database(args: argparse.Namespace) -> Iterator[Connection]:
    """A transaction on the configured database; an unreachable server is a one-line error."""
    from db.connector import family_errors
    from tasks.database import engine

    url = use_database_url(args)
    with family_errors(database_url=url), engine().begin() as conn:
        yield conn
