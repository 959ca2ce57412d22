"""The migration runner: applies `sql/migrations/NN_name.sql` in order, once each.

Each file runs in its own transaction and is recorded with its SHA-256. A
session-level advisory lock serialises concurrent runners; an applied file
whose checksum changed is refused rather than silently skipped.

The ledger lives in schema `regnotify`, out of PostgREST's reach (it exposes
`public`) and granted to nobody; a ledger older runners kept in
`public.regnotify_migrations` is moved there on the next run.

Beside it the runner records, in each file's own transaction, what the file
created and what it changed that was there before (db/install/install_ledger.py),
from a catalog snapshot taken before and after it (db/install/catalog_snapshot.py):
what `regnotify migrate --to NN` and `regnotify uninstall` (db/install/undo.py) read
to take regnotify out and leave the dealership's own objects as they were.
Before the first file, a preflight (db/install/install_preflight.py) refuses a
dealership's existing table that cannot take the migrations.
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
from db.connector import family_errors
from db.errors import CallerNotAllowed, DatabaseError, DatabaseUnavailable, MigrationError
from db.install import install_ledger, install_preflight
from db.install.catalog_snapshot import snapshot
from db.sql_files import migrations_dir

# Arbitrary but fixed: "regnotify" spelled as bytes, folded into a bigint.
MIGRATION_LOCK_KEY = 0x7265676E6F74

_FILE_NAME = re.compile(r"^\d{2,}_[a-z0-9_]+\.sql$")

LEDGER = "regnotify.migrations"
_OLD_LEDGER = "public.regnotify_migrations"
_API_ROLES = ("anon", "authenticated", "service_role")

_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS regnotify.migrations (
    filename   text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

# Migration 04 reads current_setting('cron.database_name', true), which raises
# (missing_ok notwithstanding) where pg_cron is preloaded and the owner is
# neither a superuser nor in pg_read_all_settings: RDS, Cloud SQL, Neon. 04 is
# history and cannot change, so the runner applies such a file with this
# stand-in first on its search_path: the setting then reads as unset, which is
# what 04 already handles, and the owner is told why.
_SETTING_SHIM = """
CREATE OR REPLACE FUNCTION regnotify.current_setting(setting_name text, missing_ok boolean)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $fn$
BEGIN
    RETURN pg_catalog.current_setting(setting_name, missing_ok);
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'regnotify: % is not readable by role % (not a superuser, not in '
                 'pg_read_all_settings): treated as unset', setting_name, current_user;
    RETURN NULL;
END
$fn$
"""
_SHIM_SEARCH_PATH = "SET LOCAL search_path = regnotify, pg_catalog, public"
_PROTECTED_PROBE = "SELECT current_setting('cron.database_name', true)"


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


def _applied(
    conn: psycopg.Connection, ledger: str = LEDGER
) -> dict[str, tuple[str, datetime]]:
    rows = conn.execute(f"SELECT filename, checksum, applied_at FROM {ledger}").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def _applied_anywhere(conn: psycopg.Connection) -> set[str]:
    """The applied files, from whichever ledger there is yet (none: nothing applied)."""
    for ledger in (LEDGER, _OLD_LEDGER):
        if _exists(conn, ledger):
            return set(_applied(conn, ledger))
    return set()


def _exists(conn: psycopg.Connection, relation: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,)).fetchone()
    return bool(row and row[0])


def _prepare_ledger(conn: psycopg.Connection) -> None:
    """Create schema regnotify and its ledger, moving an old public ledger over."""
    with conn.transaction():
        conn.execute("CREATE SCHEMA IF NOT EXISTS regnotify")
        conn.execute("REVOKE ALL ON SCHEMA regnotify FROM PUBLIC")
        if _exists(conn, _OLD_LEDGER):
            if _exists(conn, LEDGER):
                # Both: an old runner ran after a new one. Keep every record.
                conn.execute(
                    f"INSERT INTO {LEDGER} (filename, checksum, applied_at) "
                    f"SELECT filename, checksum, applied_at FROM {_OLD_LEDGER} "
                    "ON CONFLICT (filename) DO NOTHING"
                )
                conn.execute(f"DROP TABLE {_OLD_LEDGER}")
            else:
                conn.execute(f"ALTER TABLE {_OLD_LEDGER} SET SCHEMA regnotify")
                conn.execute("ALTER TABLE regnotify.regnotify_migrations RENAME TO migrations")
        conn.execute(_LEDGER_DDL)
        # Default privileges may have granted the new table to the API roles.
        roles = [r[0] for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(_API_ROLES),))]
        conn.execute(f"REVOKE ALL ON {LEDGER} FROM {', '.join(['PUBLIC', *roles])}")
        install_ledger.prepare(conn, roles)


def _check_api_roles(conn: psycopg.Connection) -> None:
    """Refuse early, with the fix, when 01 could not create the roles it needs."""
    present = {r[0] for r in conn.execute(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(_API_ROLES),))}
    missing = [r for r in _API_ROLES if r not in present]
    if not missing:
        return
    row = conn.execute(
        "SELECT current_user, rolsuper OR rolcreaterole FROM pg_roles "
        "WHERE rolname = current_user").fetchone()
    if row is None or row[1]:
        return
    creates = " ".join(f"CREATE ROLE {r} NOLOGIN NOINHERIT;" for r in missing)
    raise MigrationError(
        f"roles {', '.join(missing)} do not exist and {row[0]} may not create them "
        f"(no CREATEROLE): have an administrator run `{creates}` or grant {row[0]} "
        "CREATEROLE, then migrate again"
    )


def _protected_setting_unreadable(conn: psycopg.Connection) -> bool:
    """Whether reading cron.database_name raises here (pg_cron loaded, owner unprivileged)."""
    try:
        with family_errors(), conn.transaction():
            conn.execute(_PROTECTED_PROBE)
    except CallerNotAllowed:
        return True
    return False


def _connect(database_url: str) -> psycopg.Connection:
    try:
        with family_errors():
            return psycopg.connect(libpq_url(database_url), autocommit=True)
    except DatabaseUnavailable as exc:
        raise MigrationError(f"cannot connect to the database: {exc.detail}".strip()) from exc


def status(database_url: str, folder: Path | None = None) -> list[MigrationState]:
    """Every migration known on disk or in the database, with its state."""
    files = {f.filename: f for f in discover(folder)}
    with _connect(database_url) as conn:
        applied = {}
        for ledger in (LEDGER, _OLD_LEDGER):
            if _exists(conn, ledger):
                applied = _applied(conn, ledger)
                break
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
            # Before anything changes (the ledger included): a dealership's own
            # table that cannot take the migrations stops them here, with the fix.
            already = _applied_anywhere(conn)
            install_preflight.check(conn, [f.filename for f in files
                                           if f.filename not in already])
            try:
                with family_errors():
                    _prepare_ledger(conn)
            except DatabaseError as exc:
                raise MigrationError(
                    f"cannot set up the migration ledger {LEDGER}: {exc.detail}".strip()
                ) from exc
            done = _applied(conn)
            pending = [f.filename for f in files if f.filename not in done]
            if pending:
                _check_api_roles(conn)
            if pending and not done and not install_ledger.has_baseline(conn):
                with conn.transaction():
                    install_ledger.record_baseline(conn)
            shim = _protected_setting_unreadable(conn)
            if shim:
                with conn.transaction():
                    conn.execute(_SETTING_SHIM)
                    conn.execute(
                        "REVOKE ALL ON FUNCTION regnotify.current_setting(text, boolean) "
                        "FROM PUBLIC")
            after: dict[str, str] | None = None
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
                    with family_errors(), conn.transaction():
                        # The previous file's "after" is this one's "before":
                        # the advisory lock keeps other runners out between them.
                        before = after if after is not None else snapshot(conn)
                        if shim and "current_setting(" in f.sql:
                            conn.execute(_SHIM_SEARCH_PATH)
                        conn.execute(f.sql)
                        conn.execute(
                            f"INSERT INTO {LEDGER} (filename, checksum) VALUES (%s, %s)",
                            (f.filename, f.checksum),
                        )
                        # What this file created and what it changed that
                        # was there before: what undo and uninstall put back.
                        now = snapshot(conn)
                        install_ledger.record_diff(conn, f.filename, before, now)
                        install_ledger.log(conn, f.filename, "apply")
                    after = now
                except DatabaseError as exc:
                    raise MigrationError(
                        f"{f.filename} failed and was rolled back: {exc.detail}".strip()
                    ) from exc
                applied_now.append(f.filename)
                if on_applied:
                    on_applied(f.filename, [n for n in notices if n.startswith("regnotify")])
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now
