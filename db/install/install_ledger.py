"""What each migration created and what it found: the records undo and uninstall read.

Beside the applied-files ledger (regnotify.migrations) schema regnotify holds:

  regnotify.baseline  the catalog keys present before the first migration ran:
                      what the dealership had (its own tables, roles, ...)
  regnotify.objects   per migration file, each key it created ('created') and,
                      for what was there before, the definition it changed
                      ('original'), written in that file's transaction
  regnotify.history   every apply and undo, when and by whom
  regnotify.adopted(key)  true for a key that existed before regnotify and
                      that regnotify did not create: undo files ask it before
                      dropping something the dealership may have had first
  regnotify.created(key)  true for a key some applied migration created

Keys are db/install/catalog_snapshot.py's. A database migrated by a runner older
than these records has no baseline: its undo files run as written, and the
runner's guard against dropping adopted objects is off.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import tuple_row

from db.install.catalog_snapshot import snapshot

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS regnotify.baseline (key text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS regnotify.objects (
    seq      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    filename text NOT NULL,
    key      text NOT NULL,
    state    text NOT NULL CHECK (state IN ('created', 'original')),
    value    text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ix_objects_filename ON regnotify.objects (filename);
CREATE INDEX IF NOT EXISTS ix_objects_key ON regnotify.objects (key);
CREATE TABLE IF NOT EXISTS regnotify.history (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    filename text NOT NULL,
    action   text NOT NULL CHECK (action IN ('apply', 'undo')),
    at       timestamptz NOT NULL DEFAULT now(),
    by_role  text NOT NULL DEFAULT current_user
);
CREATE OR REPLACE FUNCTION regnotify.adopted(p_key text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT EXISTS (SELECT 1 FROM regnotify.baseline b WHERE b.key = p_key)
       AND NOT EXISTS (SELECT 1 FROM regnotify.objects o
                       WHERE o.key = p_key AND o.state = 'created')
$fn$;
CREATE OR REPLACE FUNCTION regnotify.created(p_key text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT EXISTS (SELECT 1 FROM regnotify.objects o
                   WHERE o.key = p_key AND o.state = 'created')
$fn$;
"""

LEDGER_OBJECTS = ("regnotify.baseline", "regnotify.objects", "regnotify.history")


def prepare(conn: psycopg.Connection, roles: list[str]) -> None:
    """Create the record tables (in the caller's transaction), readable by the owner only."""
    conn.execute(LEDGER_DDL)
    grantees = ", ".join(["PUBLIC", *roles])
    for table in LEDGER_OBJECTS:
        conn.execute(f"REVOKE ALL ON {table} FROM {grantees}")
    for fn in ("adopted", "created"):
        conn.execute(f"REVOKE ALL ON FUNCTION regnotify.{fn}(text) FROM {grantees}")


def _rows(conn: psycopg.Connection, query: str, params: tuple = ()) -> list[tuple]:
    with conn.cursor(row_factory=tuple_row) as cur:
        return list(cur.execute(query, params).fetchall())


def has_baseline(conn: psycopg.Connection) -> bool:
    """Whether this install was recorded from its first migration on."""
    return bool(_rows(conn, "SELECT 1 FROM regnotify.baseline LIMIT 1"))


def record_baseline(conn: psycopg.Connection) -> None:
    """Remember everything there before the first migration: the dealership's own."""
    keys = sorted(snapshot(conn))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO regnotify.baseline (key) VALUES (%s) "
                        "ON CONFLICT DO NOTHING", [(k,) for k in keys])


def created_keys(conn: psycopg.Connection) -> set[str]:
    """Every key some applied migration created."""
    return {r[0] for r in _rows(
        conn, "SELECT key FROM regnotify.objects WHERE state = 'created'")}


def originals(conn: psycopg.Connection) -> set[str]:
    """Keys whose pre-regnotify definition is recorded."""
    return {r[0] for r in _rows(
        conn, "SELECT key FROM regnotify.objects WHERE state = 'original'")}


def record_diff(conn: psycopg.Connection, filename: str, before: dict[str, str],
                after: dict[str, str]) -> None:
    """Record what `filename` created, and the first change to anything it did not create."""
    made = created_keys(conn)
    kept = originals(conn)
    rows: list[tuple[str, str, str, str]] = []
    for key in sorted(after.keys() - before.keys()):
        rows.append((filename, key, "created", ""))
    for key, value in before.items():
        if after.get(key) == value or key in made or key in kept:
            continue
        # There before and changed (or removed): keep how it was, once.
        rows.append((filename, key, "original", value))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO regnotify.objects (filename, key, state, value) "
                        "VALUES (%s, %s, %s, %s)", rows)


def records_of(conn: psycopg.Connection, filename: str) -> list[tuple[str, str, str]]:
    """(key, state, value) recorded for one file, newest first."""
    return [(r[0], r[1], r[2]) for r in _rows(
        conn, "SELECT key, state, value FROM regnotify.objects WHERE filename = %s "
              "ORDER BY seq DESC", (filename,))]


def created_elsewhere(conn: psycopg.Connection, filename: str) -> set[str]:
    """Keys created by another applied file (one that stays when `filename` is undone)."""
    return {r[0] for r in _rows(
        conn, "SELECT key FROM regnotify.objects WHERE state = 'created' AND filename <> %s",
        (filename,))}


def adopted_keys(conn: psycopg.Connection) -> set[str]:
    """Keys there before regnotify and never created by it."""
    return {r[0] for r in _rows(
        conn, "SELECT b.key FROM regnotify.baseline b WHERE NOT EXISTS ("
              "SELECT 1 FROM regnotify.objects o WHERE o.key = b.key AND o.state = 'created')")}


def forget(conn: psycopg.Connection, filename: str) -> None:
    """Drop one file's records (it was undone)."""
    conn.execute("DELETE FROM regnotify.objects WHERE filename = %s", (filename,))


def log(conn: psycopg.Connection, filename: str, action: str) -> None:
    """One line of history."""
    conn.execute("INSERT INTO regnotify.history (filename, action) VALUES (%s, %s)",
                 (filename, action))
