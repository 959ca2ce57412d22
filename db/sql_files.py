"""Where the project's SQL lives, in a checkout and in an installed wheel."""

from __future__ import annotations

import os
from pathlib import Path


def sql_root() -> Path:
    """Return the `sql/` folder: $REGNOTIFY_SQL_DIR, the wheel's copy, or the checkout's."""
    override = os.environ.get("REGNOTIFY_SQL_DIR")
    if override:
        return Path(override)
    packaged = Path(__file__).resolve().parent / "sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "sql"


def migrations_dir() -> Path:
    """Return the folder of numbered migration files."""
    return sql_root() / "migrations"


def queries_dir() -> Path:
    """Return the folder of named-query files."""
    return sql_root() / "queries"
