"""Before installing over a dealership's own tables: will they take the migrations?

The seed plan's project already has `registrations` (plan 02-01) and
`registration_notifications` (plan 03-01), with rows. Migrations 02 and 03
create them only IF NOT EXISTS, so an existing table is adopted as it is:
its rows, extra columns, policies and grants stay. What cannot stay is a
column regnotify relies on with another type, a CHECK that refuses values
regnotify writes, or a NOT NULL column regnotify's inserts do not fill.
Any of those stops the run before the first file changes anything, naming
the column and the statement that fixes it. Applied files are history and
never edited; this check is the runner's.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import tuple_row

from db.connector import family_errors
from db.errors import DatabaseError, MigrationError, ValueRefused
from db.vocabulary import LANGUAGES, PREFERENCES, SKIP_REASONS

_TEXT = "text"
_TZ = "timestamp with time zone"
#: A CHECK refused the value (the other class-23 states cannot happen on the
#: copy: its NOT NULLs are dropped, and LIKE copies no unique or foreign key).
_CHECK_VIOLATION = "23514"
#: Class 22, data exception: the value is not of the column's type.
_DATA_EXCEPTION = "22"

# The columns regnotify reads and writes, as the migrations create them.
# `base` columns come with the table (02, 03): an adopted table must have
# them. The others are added IF NOT EXISTS (04 on): absent is fine, present
# must be the same type.
_TABLES: dict[str, dict[str, object]] = {
    "public.registrations": {
        "created_by": "02_registrations.sql",
        "base": {
            "id": "uuid", "customer_name": _TEXT, "customer_phone": _TEXT,
            "customer_email": _TEXT, "vin": _TEXT, "vehicle_year": "integer",
            "vehicle_make": _TEXT, "vehicle_model": _TEXT, "plate_number": _TEXT,
            "current_stage": _TEXT, "created_at": _TZ, "updated_at": _TZ,
        },
        "added": {
            "notification_pref": _TEXT, "pending_notify_customer": "boolean",
            "time_zone": _TEXT, "language": _TEXT,
        },
        "values": {
            "notification_pref": list(PREFERENCES),
            "language": list(LANGUAGES),
        },
        "inserts": False,
    },
    "public.registration_notifications": {
        "created_by": "03_registration_notifications.sql",
        "base": {
            "id": "bigint", "registration_id": "uuid", "channel": _TEXT, "recipient": _TEXT,
            "status": _TEXT, "attempts": "integer", "error_code": _TEXT,
            "error_message": _TEXT, "created_at": _TZ, "updated_at": _TZ, "sent_at": _TZ,
            "delivered_at": _TZ,
        },
        "added": {
            "queue_id": "bigint", "old_stage": _TEXT, "new_stage": _TEXT, "subject": _TEXT,
            "template_used": _TEXT, "provider_message_id": _TEXT, "provider": _TEXT,
            "body": _TEXT, "skip_reason": _TEXT, "outcome_unknown": "boolean",
            "last_attempt_at": _TZ, "next_attempt_at": _TZ, "lease_until": _TZ,
            "attempts_at_redrive": "integer", "email_batch_id": _TEXT, "parked": "boolean",
            "held_until": _TZ, "hold_reason": _TEXT, "hold_zone": _TEXT,
            "fallback_for": "bigint", "email_batch_keyed_at": _TZ, "language": _TEXT,
        },
        "values": {
            "channel": ["sms", "email"],
            "status": ["queued", "sending", "sent", "delivered", "undelivered", "failed",
                       "bounced", "complained", "skipped"],
            "skip_reason": list(SKIP_REASONS),
            "hold_reason": ["quiet_hours"],
            "language": list(LANGUAGES),
        },
        # The queue run inserts one row per burst and channel.
        "inserts": True,
    },
}

# Same kind of value for every query regnotify runs on it.
_TEXTLIKE = ("text", "character varying")


def _same_type(have: str, want: str) -> bool:
    if want == _TEXT:
        return have.split("(")[0] in _TEXTLIKE
    return have == want


def check(conn: psycopg.Connection, pending: list[str]) -> None:
    """Raise MigrationError naming every conflict of an existing table with the migrations."""
    problems: list[str] = []
    for table, spec in _TABLES.items():
        if spec["created_by"] not in pending:
            continue  # regnotify made it (or adopted it already)
        problems += _check_table(conn, table, spec)
    if problems:
        raise MigrationError(
            "the database's own tables conflict with regnotify; nothing was changed. "
            + " ".join(problems) + " Then run regnotify migrate again.")


def _columns(conn: psycopg.Connection, table: str) -> dict[str, tuple[str, bool, bool]]:
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' "
            "FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) "
            "AND a.attnum > 0 AND NOT a.attisdropped", (table,)).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _check_table(conn: psycopg.Connection, table: str, spec: dict) -> list[str]:
    cols = _columns(conn, table)
    if not cols:
        return []
    short = table.split(".", 1)[1]
    out: list[str] = []
    for name, want in spec["base"].items():
        if name not in cols:
            out.append(f"{short}.{name} is missing: regnotify needs it ({want}); add it with "
                       f"ALTER TABLE {table} ADD COLUMN {name} {want};")
    for name, want in {**spec["base"], **spec["added"]}.items():
        if name in cols and not _same_type(cols[name][0], want):
            out.append(f"{short}.{name} is {cols[name][0]} where regnotify needs {want}: "
                       f"convert it (ALTER TABLE {table} ALTER COLUMN {name} TYPE {want} "
                       f"USING {name}::{want}) or rename yours (ALTER TABLE {table} RENAME "
                       f"COLUMN {name} TO {name}_own);")
    if spec["inserts"]:
        known = set(spec["base"]) | set(spec["added"])
        for name, (_, notnull, has_default) in cols.items():
            if notnull and not has_default and name not in known:
                out.append(f"{short}.{name} is NOT NULL without a default and regnotify's "
                           f"rows do not fill it: give it a default (ALTER TABLE {table} "
                           f"ALTER COLUMN {name} SET DEFAULT ...) or drop NOT NULL;")
    out += _check_values(conn, table, short, spec["values"], cols)
    return out


def _check_values(conn: psycopg.Connection, table: str, short: str,
                  values: dict[str, list[str]], cols: dict) -> list[str]:
    """Try each value regnotify writes against a copy of the table's CHECKs."""
    targets = {c: v for c, v in values.items() if c in cols}
    if not targets:
        return []
    out: list[str] = []
    try:
        # family_errors outside each transaction: the savepoint rolls back on
        # the driver's error, then the connector names it.
        with family_errors(), conn.transaction(force_rollback=True):
            conn.execute(f"CREATE TEMP TABLE regnotify_preflight "
                         f"(LIKE {table} INCLUDING CONSTRAINTS)")
            for col in cols:
                conn.execute(f'ALTER TABLE regnotify_preflight ALTER COLUMN "{col}" '
                             "DROP NOT NULL")
            for col, vals in targets.items():
                for val in vals:
                    try:
                        with family_errors(), conn.transaction():
                            conn.execute(f'INSERT INTO regnotify_preflight ("{col}") '
                                         "VALUES (%s)", (val,))
                    except ValueRefused as exc:
                        if exc.sqlstate != _CHECK_VIOLATION:
                            raise
                        con = exc.constraint or "a CHECK constraint"
                        out.append(
                            f"{short}.{col}: {con} refuses '{val}', a value regnotify "
                            f"writes: widen it (ALTER TABLE {table} DROP CONSTRAINT {con}, "
                            f"ADD CONSTRAINT {con} CHECK ({col} IN "
                            f"({', '.join(repr(v) for v in vals)})));")
                        break
                    except DatabaseError as exc:
                        if not (exc.sqlstate or "").startswith(_DATA_EXCEPTION):
                            raise
                        break  # a type conflict, said above
    except DatabaseError:
        return out
    return out
