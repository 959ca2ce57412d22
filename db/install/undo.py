"""Stepping back: `regnotify migrate --to NN` and `regnotify uninstall`.

Each migration `NN_name.sql` has its undo at `down/NN_name.down.sql`. An undo
whose first line is `-- drops-data: <what>` deletes data and runs only when
the caller says --drop-data; otherwise nothing runs and the caller is told
what would go.

Undoing one file, in one transaction: run its undo; drop whatever the file
was recorded creating that is still there (and no other applied file
created); put back the definitions it changed on things that were there
before regnotify (grants, row-level security, policies, functions); then,
where the install was recorded from the start, check that nothing the
dealership had before regnotify (adopted) is gone -- if something is, the
whole undo is rolled back and refused. Finally the file leaves the ledger and
the history gets a line.

`uninstall` undoes every applied file, newest first, in ONE transaction
(all or nothing), then removes pg_cron jobs and the Vault secret regnotify
named, and the ledger schema itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.rows import tuple_row

from db.connector import family_errors
from db.errors import DatabaseError, MigrationError
from db.install import install_ledger
from db.install.catalog_restore import drop_kind, drop_statements, restore, run_drop
from db.install.catalog_snapshot import snapshot
from db.install.migrations import (
    LEDGER,
    MIGRATION_LOCK_KEY,
    _applied,
    _connect,
    _exists,
    discover,
)
from db.sql_files import migrations_dir

DROPS_DATA = "-- drops-data:"
VAULT_SECRET = "regnotify_relay_token"
CRON_JOBS = ("process-notification-queue", "regnotify-prune")


@dataclass(frozen=True)
class UndoFile:
    """The undo of one migration."""

    migration: str
    path: Path

    @property
    def sql(self) -> str:
        """The undo's SQL text."""
        return self.path.read_text(encoding="utf-8")

    @property
    def drops(self) -> str | None:
        """What it deletes, in words, from its first line; None when it deletes no data."""
        first = self.sql.lstrip().splitlines()[0] if self.sql.strip() else ""
        if first.lower().startswith(DROPS_DATA):
            return first[len(DROPS_DATA):].strip()
        return None


@dataclass
class UndoReport:
    """What an undo run did, for a person."""

    undone: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def down_dir(folder: Path | None = None) -> Path:
    """Where the undo files live: down/ beside the migrations (the Supabase CLI skips it)."""
    return (folder or migrations_dir()) / "down"


def undo_file(migration: str, folder: Path | None = None) -> UndoFile:
    """The undo of `migration` (NN_name.sql -> down/NN_name.down.sql); an error when missing."""
    path = down_dir(folder) / migration.replace(".sql", ".down.sql")
    if not path.is_file():
        raise MigrationError(
            f"{migration} has no undo file ({path.name} in {path.parent}): it cannot be "
            "rolled back by regnotify")
    return UndoFile(migration, path)


def number(filename: str) -> int:
    """The NN of NN_name.sql."""
    return int(filename.split("_", 1)[0])


def _refuse_data_loss(undos: list[UndoFile], drop_data: bool, what: str) -> None:
    losing = [f"{u.migration.removesuffix('.sql')}: {u.drops}" for u in undos if u.drops]
    if losing and not drop_data:
        raise MigrationError(
            f"{what} would delete data and nothing was changed: " + "; ".join(losing)
            + ". Run it again with --drop-data to accept that.")


def plan(database_url: str, to: int | None, folder: Path | None = None) -> list[UndoFile]:
    """The undo files `migrate --to` (or uninstall, to=None) would run, newest first."""
    with _connect(database_url) as conn:
        applied = _applied(conn) if _exists(conn, LEDGER) else {}
    names = sorted((n for n in applied if to is None or number(n) > to), reverse=True)
    return [undo_file(n, folder) for n in names]


def rollback(
    database_url: str,
    to: int,
    *,
    drop_data: bool = False,
    folder: Path | None = None,
    on_undone: Callable[[str, list[str]], None] | None = None,
) -> UndoReport:
    """Take the database back to just after migration `to`, one file at a time, newest first.

    Each file's undo runs in its own transaction: one that fails is rolled
    back and stops the run, leaving the database as that file left it.
    """
    if to < 0:
        raise MigrationError("--to takes a migration number (00 removes every migration)")
    known = {number(f.filename) for f in discover(folder)}
    if to and to not in known:
        raise MigrationError(f"no migration numbered {to:02d}: the numbers are "
                             f"{', '.join(f'{n:02d}' for n in sorted(known))}")
    report = UndoReport()
    with _connect(database_url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            undos = _pending_undos(conn, to, folder)
            _refuse_data_loss(undos, drop_data, f"rolling back to {to:02d}")
            state: dict[str, str] | None = None
            for u in undos:
                try:
                    with family_errors(), conn.transaction():
                        notes, after = _undo_one(conn, u, report, state)
                    state = after
                except DatabaseError as exc:
                    raise MigrationError(
                        f"the undo of {u.migration} failed and was rolled back (the "
                        f"database is as it was before it): {exc.detail}") from exc
                report.undone.append(u.migration)
                if on_undone:
                    on_undone(u.migration, notes)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return report


def _pending_undos(conn: psycopg.Connection, to: int | None,
                   folder: Path | None) -> list[UndoFile]:
    if not _exists(conn, LEDGER):
        return []
    applied = _applied(conn)
    names = sorted((n for n in applied if to is None or number(n) > to), reverse=True)
    return [undo_file(n, folder) for n in names]


def _recorded(conn: psycopg.Connection) -> bool:
    return _exists(conn, "regnotify.baseline") and install_ledger.has_baseline(conn)


def _undo_one(conn: psycopg.Connection, u: UndoFile, report: UndoReport,
              before: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Undo one file inside the caller's transaction.

    `before` is the catalog now, when the caller has it (the previous undo's
    result). Returns notes for a person and the catalog afterwards.
    """
    recorded = _exists(conn, "regnotify.objects")
    guarded = recorded and _recorded(conn)
    before = before if before is not None else snapshot(conn)
    adopted = install_ledger.adopted_keys(conn) if guarded else set()
    conn.execute(u.sql)
    notes: list[str] = []
    after = snapshot(conn)
    if recorded and _fix_up(conn, u.migration, report, after, notes):
        after = snapshot(conn)
    gone = sorted(k for k in before if k not in after and k in adopted)
    if gone:
        raise MigrationError(
            f"the undo of {u.migration} would remove what was there before regnotify: "
            f"{', '.join(_say(k) for k in summarize(gone))}; nothing was changed. regnotify keeps "
            "what it adopted (regnotify uninstall keeps it too)")
    report.removed += [k for k in before if k not in after]
    if recorded:
        install_ledger.forget(conn, u.migration)
        install_ledger.log(conn, u.migration, "undo")
    conn.execute(f"DELETE FROM {LEDGER} WHERE filename = %s", (u.migration,))
    return notes, after


def _fix_up(conn: psycopg.Connection, migration: str, report: UndoReport,
            present: dict[str, str], notes: list[str]) -> bool:
    """Drop what the file created that its undo left; put back what it changed.

    Returns whether it changed anything (the catalog must be read again).
    """
    records = install_ledger.records_of(conn, migration)
    elsewhere = install_ledger.created_elsewhere(conn, migration)
    changed = False
    created = [(k, "") for k, state, _ in records if state == "created" and k not in elsewhere]
    tables_going = {k.split("|", 1)[1] for k, _ in created
                    if k in present and drop_kind(k, present[k]) == "table"}
    for key, stmt in drop_statements(created, present, tables_going):
        changed = True
        note = run_drop(conn, key, stmt)
        if note:
            notes.append(note)
            report.kept.append(note)
    for key, state, value in records:
        if state != "original" or present.get(key) == value:
            continue
        changed = True
        note = restore(conn, key, value)
        if note:
            notes.append(note)
        else:
            report.restored.append(key)
    return changed


def summarize(keys: list[str]) -> list[str]:
    """The keys a person needs: no grants or RLS switches, nothing inside a table also named."""
    names = {k.split("|", 1)[1] for k in keys if k.startswith("rel|")}
    out = []
    for key in keys:
        kind, name = key.split("|", 1)
        if kind.endswith("acl") or kind == "rls":
            continue
        if kind in ("col", "con", "trg", "pol") and name.rpartition(".")[0] in names:
            continue
        out.append(key)
    return out


def _say(key: str) -> str:
    kind, name = key.split("|", 1)
    words = {"rel": "", "col": "column ", "fn": "function ", "pol": "policy ",
             "trg": "trigger ", "con": "constraint ", "role": "role ", "schema": "schema ",
             "type": "type ", "ext": "extension ", "cron": "pg_cron job "}
    return words.get(kind, kind + " ") + name


# ── Uninstall ────────────────────────────────────────────────────────────────


def uninstall_plan(database_url: str, folder: Path | None = None) -> tuple[
        list[UndoFile], list[str], list[str]]:
    """(undo files, what regnotify created that is there now, what it adopted)."""
    with _connect(database_url) as conn:
        undos = _pending_undos(conn, None, folder)
        if not _exists(conn, "regnotify.objects"):
            return undos, [], []
        present = snapshot(conn)
        made = sorted(k for k in install_ledger.created_keys(conn) if k in present)
        adopted = sorted(k for k in install_ledger.adopted_keys(conn)
                         if k.startswith("rel|") and k in present) if _recorded(conn) else []
    return undos, made, adopted


def uninstall(
    database_url: str,
    *,
    drop_data: bool = False,
    folder: Path | None = None,
) -> UndoReport:
    """Remove every migration and what it left, keeping what was there before; all or nothing."""
    report = UndoReport()
    with _connect(database_url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            undos = _pending_undos(conn, None, folder)
            _refuse_data_loss(undos, drop_data, "uninstalling")
            if _exists(conn, "regnotify.baseline") and _recorded(conn):
                report.kept += [
                    _say(k) for k in sorted(install_ledger.adopted_keys(conn))
                    if k.startswith("rel|") and _is_table(conn, k)]
            try:
                with family_errors(), conn.transaction():
                    state: dict[str, str] | None = None
                    for u in undos:
                        _, state = _undo_one(conn, u, report, state)
                        report.undone.append(u.migration)
                    report.notes += _leftovers(conn)
                    conn.execute("DROP SCHEMA IF EXISTS regnotify CASCADE")
                    report.notes.append("dropped schema regnotify (the migration ledger)")
            except DatabaseError as exc:
                raise MigrationError(
                    f"uninstall failed and was rolled back (nothing was removed): "
                    f"{exc.detail}") from exc
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return report


def _is_table(conn: psycopg.Connection, key: str) -> bool:
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT relkind IN ('r', 'p') FROM pg_class "
                          "WHERE oid = to_regclass(%s)", (key.split("|", 1)[1],)).fetchone()
    return bool(row and row[0])


def _leftovers(conn: psycopg.Connection) -> list[str]:
    """What no migration's record covers: pg_cron jobs of older installs, the Vault secret."""
    notes: list[str] = []
    with conn.cursor(row_factory=tuple_row) as cur:
        if cur.execute("SELECT to_regclass('cron.job') IS NOT NULL").fetchone()[0]:  # type: ignore[index]
            for (name,) in cur.execute(
                    "SELECT jobname FROM cron.job WHERE jobname = ANY(%s) "
                    "AND username = current_user AND database = current_database()",
                    (list(CRON_JOBS),)).fetchall():
                cur.execute("SELECT cron.unschedule(%s)", (name,))
                notes.append(f"unscheduled pg_cron job {name}")
        if cur.execute("SELECT to_regclass('vault.secrets') IS NOT NULL").fetchone()[0]:  # type: ignore[index]
            try:
                with family_errors(), conn.transaction():
                    gone = cur.execute("DELETE FROM vault.secrets WHERE name = %s",
                                       (VAULT_SECRET,)).rowcount
                if gone:
                    notes.append(f"deleted Vault secret {VAULT_SECRET}")
            except DatabaseError as exc:
                notes.append(f"kept Vault secret {VAULT_SECRET}: {exc.detail.splitlines()[0]} "
                             f"(delete it in the dashboard: Vault, {VAULT_SECRET})")
    return notes
