"""The migration runner: applies `sql/migrations/NN_name.sql` in order, once each.

Each file runs in its own transaction and is recorded with its SHA-256. A
session-level advisory lock serialises concurrent runners; an applied file
whose checksum changed is refused rather than silently skipped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from db.connection import libpq_url
from db.errors import MigrationError
from db.sql_files import migrations_dir

# Arbitrary but fixed: "regnotify" spelled as bytes, folded into a bigint.
MIGRATION_LOCK_KEY = 0x7265676E6F74

_FILE_NAME = re.compile(r"^\d{2,}_[a-z0-9_]+\.sql$")

_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS public.regnotify_migrations (
    filename   text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class MigrationFile:
    """One migration file on disk."""

    filename: str
    path: Path
    checksum: str

    @property
    def sql(self) -> str:
        """The file's SQL text."""
        return self.path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class MigrationState:
    """A file and whether, when and with which checksum it was applied."""

    filename: str
    applied_at: datetime | None
    checksum_on_disk: str | None
    checksum_applied: str | None

    @property
    def status(self) -> str:
        """'applied', 'pending', 'edited' (applied, then changed) or 'missing' (no file)."""
        if self.checksum_applied is None:
            return "pending"
        if self.checksum_on_disk is None:
            return "missing"
        if self.checksum_on_disk != self.checksum_applied:
            return "edited"
        return "applied"


def discover(folder: Path | None = None) -> list[MigrationFile]:
    """The migration files in name order; a misnamed .sql file is an error, not ignored."""
    folder = folder or migrations_dir()
    if not folder.is_dir():
        raise MigrationError(f"no migrations folder at {folder}")
    files = []
    for path in sorted(folder.glob("*.sql")):
        if not _FILE_NAME.match(path.name):
            raise MigrationError(
                f"{path.name}: migration files are named NN_lowercase_name.sql"
            )
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        files.append(MigrationFile(path.name, path, digest))
    return files


def _applied(conn: psycopg.Connection) -> dict[str, tuple[str, datetime]]:
    rows = conn.execute(
        "SELECT filename, checksum, applied_at FROM public.regnotify_migrations"
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def _connect(database_url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(libpq_url(database_url), autocommit=True)
    except psycopg.OperationalError as exc:
        raise MigrationError(f"cannot connect to the database: {exc}".strip()) from exc


def status(database_url: str, folder: Path | None = None) -> list[MigrationState]:
    """Every migration known on disk or in the database, with its state."""
    files = {f.filename: f for f in discover(folder)}
    with _connect(database_url) as conn:
        exists = conn.execute("SELECT to_regclass('public.regnotify_migrations')").fetchone()
        applied = _applied(conn) if exists and exists[0] else {}
    names = sorted(set(files) | set(applied))
    return [
        MigrationState(
            filename=name,
            applied_at=applied[name][1] if name in applied else None,
            checksum_on_disk=files[name].checksum if name in files else None,
            checksum_applied=applied[name][0] if name in applied else None,
        )
        for name in names
    ]


def migrate(
    database_url: str,
    folder: Path | None = None,
    *,
    on_applied: Callable[[str, list[str]], None] | None = None,
) -> list[str]:
    """Apply pending migrations; return the file names applied.

    `on_applied(filename, notices)` is called after each file commits, with
    the NOTICEs the server raised while applying it (what is switched off).
    """
    files = discover(folder)
    applied_now: list[str] = []
    with _connect(database_url) as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        # Session-level: held across the per-file transactions below.
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(_LEDGER_DDL)
            done = _applied(conn)
            for f in files:
                if f.filename in done:
                    if done[f.filename][0] != f.checksum:
                        raise MigrationError(
                            f"{f.filename} was applied on {done[f.filename][1]:%Y-%m-%d %H:%M} "
                            "and has been edited since (checksum differs). Applied migrations "
                            "are history: put the change in a new migration file."
                        )
                    continue
                notices.clear()
                try:
                    with conn.transaction():
                        conn.execute(f.sql)
                        conn.execute(
                            "INSERT INTO public.regnotify_migrations (filename, checksum) "
                            "VALUES (%s, %s)",
                            (f.filename, f.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"{f.filename} failed and was rolled back: {exc}".strip()
                    ) from exc
                applied_now.append(f.filename)
                if on_applied:
                    on_applied(f.filename, [n for n in notices if n.startswith("regnotify")])
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now
