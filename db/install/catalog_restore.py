"""Drop what a snapshot key names, or put an adopted object back as it was.

The keys are db/install/catalog_snapshot.py's. Dropping never cascades: an object
of the dealership's that depends on one of regnotify's stops the whole
undo (its transaction rolls back) and the error names it.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from db.connector import family_errors
from db.errors import DatabaseError

# Children first, so that nothing is dropped while something still needs it.
DROP_ORDER = ("cron", "trg", "pol", "con_fk", "con", "view", "idx", "col", "table", "seq",
              "fn", "type", "schema", "ext", "member", "role")


def _split_last(name: str) -> tuple[str, str]:
    """'s.t.c' -> ('s.t', 'c'): identifiers here are as quote_ident wrote them."""
    head, _, last = name.rpartition(".")
    return head, last


def _one(conn: psycopg.Connection, query: str, params: tuple = ()) -> object:
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(query, params).fetchone()
    return row[0] if row else None


def drop_kind(key: str, value: str) -> str:
    """Which step of DROP_ORDER a created key is dropped in."""
    kind = key.split("|", 1)[0]
    if kind == "con":
        return "con_fk" if value.startswith("FOREIGN KEY") else "con"
    if kind == "rel":
        return {"v": "view", "m": "view", "i": "idx", "I": "idx", "S": "seq"}.get(
            value[:1], "table")
    return kind


def drop_statements(items: Iterable[tuple[str, str]], present: dict[str, str],
                    tables_going: set[str]) -> list[tuple[str, str]]:
    """(key, statement) pairs that drop the created objects still present, children first.

    A child of a table that goes too (its column, index, trigger, policy,
    constraint) goes with the table and gets no statement of its own.
    """
    by_step: dict[str, list[tuple[str, str]]] = {s: [] for s in DROP_ORDER}
    for key, _ in items:
        if key not in present:
            continue
        step = drop_kind(key, present[key])
        name = key.split("|", 1)[1]
        if step in ("trg", "pol", "con", "con_fk", "col", "idx"):
            owner = _split_last(name)[0] if step != "idx" else _index_table(present[key])
            if owner in tables_going:
                continue
        stmt = _drop_statement(step, name, present[key])
        if stmt:
            by_step[step].append((key, stmt))
    out: list[tuple[str, str]] = []
    for step in DROP_ORDER:
        out.extend(by_step[step])
    return out


def _index_table(value: str) -> str:
    # 'i CREATE [UNIQUE] INDEX name ON [ONLY] s.t USING ...'
    after = value.split(" ON ", 1)[1].removeprefix("ONLY ")
    return after.split(" USING ", 1)[0]


def _drop_statement(step: str, name: str, value: str) -> str | None:
    if step == "cron":
        return f"SELECT cron.unschedule({sql.quote(name)})"
    if step in ("trg", "pol"):
        table, obj = _split_last(name)
        word = "TRIGGER" if step == "trg" else "POLICY"
        return f"DROP {word} IF EXISTS {obj} ON {table}"
    if step in ("con", "con_fk"):
        owner, con = _split_last(name)
        # A domain's constraint or a table's: the caller knows the owner's kind.
        return f"ALTER TABLE IF EXISTS {owner} DROP CONSTRAINT IF EXISTS {con}"
    if step == "col":
        table, col = _split_last(name)
        return f"ALTER TABLE IF EXISTS {table} DROP COLUMN IF EXISTS {col}"
    if step == "view":
        word = "MATERIALIZED VIEW" if value.startswith("m") else "VIEW"
        return f"DROP {word} IF EXISTS {name}"
    if step == "idx":
        return f"DROP INDEX IF EXISTS {name}"
    if step == "table":
        return f"DROP TABLE IF EXISTS {name}"
    if step == "seq":
        return f"DROP SEQUENCE IF EXISTS {name}"
    if step == "fn":
        return f"DROP FUNCTION IF EXISTS {name}"
    if step == "type":
        word = "DOMAIN" if value.startswith("d") else "TYPE"
        return f"DROP {word} IF EXISTS {name}"
    if step == "schema":
        return f"DROP SCHEMA IF EXISTS {name}"
    if step == "ext":
        return f"DROP EXTENSION IF EXISTS {name}"
    if step == "member":
        role, member = name.split("|", 1)
        return f'REVOKE "{role}" FROM "{member}"'
    if step == "role":
        return f'DROP ROLE IF EXISTS "{name}"'
    return None


def is_domain_constraint(conn: psycopg.Connection, owner: str) -> bool:
    """Whether `owner` (s.t) names a domain rather than a table."""
    return bool(_one(conn, "SELECT to_regclass(%s) IS NULL AND to_regtype(%s) IS NOT NULL",
                     (owner, owner)))


def run_drop(conn: psycopg.Connection, key: str, stmt: str) -> str | None:
    """Run one drop; returns why it was kept, for the few that may be refused.

    A role may be in use in another database of the cluster, and pg_cron may
    hold other jobs: those are kept and said, not errors.
    """
    kind = key.split("|", 1)[0]
    if kind == "con":
        owner = _split_last(key.split("|", 1)[1])[0]
        if is_domain_constraint(conn, owner):
            stmt = stmt.replace("ALTER TABLE IF EXISTS", "ALTER DOMAIN", 1)
    if kind == "ext" and key == "ext|pg_cron":
        others = _one(conn, "SELECT count(*) FROM cron.job") if _one(
            conn, "SELECT to_regclass('cron.job') IS NOT NULL") else 0
        if others:
            return f"kept extension pg_cron: it holds {others} other job(s)"
    if kind in ("role", "member", "ext"):
        try:
            with family_errors(), conn.transaction():
                conn.execute(stmt)
        except DatabaseError as exc:
            return f"kept {key.replace('|', ' ', 1)}: {exc.detail.splitlines()[0]}"
        return None
    conn.execute(stmt)
    return None


# ── Putting back what was there before ───────────────────────────────────────

_ACL_TARGET = {"relacl": "TABLE", "fnacl": "FUNCTION", "schemaacl": "SCHEMA"}


def restore(conn: psycopg.Connection, key: str, value: str) -> str | None:
    """Put an adopted object's property back to `value`; returns a note when it cannot."""
    kind, name = key.split("|", 1)
    if kind in _ACL_TARGET:
        _restore_acl(conn, kind, name, value)
    elif kind == "colacl":
        _restore_column_acl(conn, name, value)
    elif kind == "rls":
        rls, force = value.split(",")
        conn.execute(f"ALTER TABLE {name} {'ENABLE' if rls == 'true' else 'DISABLE'} "
                     "ROW LEVEL SECURITY")
        conn.execute(f"ALTER TABLE {name} {'' if force == 'true' else 'NO '}FORCE "
                     "ROW LEVEL SECURITY")
    elif kind == "pol":
        table, pol = _split_last(name)
        conn.execute(f"DROP POLICY IF EXISTS {pol} ON {table}")
        conn.execute(value)
    elif kind == "trg":
        table, trg = _split_last(name)
        conn.execute(f"DROP TRIGGER IF EXISTS {trg} ON {table}")
        conn.execute(value)
    elif kind == "con":
        owner, con = _split_last(name)
        word = "DOMAIN" if is_domain_constraint(conn, owner) else "TABLE"
        conn.execute(f"ALTER {word} {owner} DROP CONSTRAINT IF EXISTS {con}")
        conn.execute(f"ALTER {word} {owner} ADD CONSTRAINT {con} {value}")
    elif kind == "fn":
        conn.execute(value)
    elif kind == "rel" and value[:1] in ("i", "I"):
        conn.execute(f"DROP INDEX IF EXISTS {name}")
        conn.execute(value[2:])
    elif kind == "member":
        role, member = name.split("|", 1)
        conn.execute(f'GRANT "{role}" TO "{member}"')
    elif kind == "cron":
        schedule, _, command = value.partition("\n")
        conn.execute("SELECT cron.schedule(%s, %s, %s)", (name, schedule, command))
    else:
        return f"{kind} {name} was changed and is not put back by regnotify (was: {value})"
    return None


def _array(items: str) -> str:
    """The snapshot's 'a=r/o,b=w/o' back to an aclitem[] literal."""
    return "{" + items + "}"


def _grantees(conn: psycopg.Connection, acl: str) -> list[str]:
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
            "ELSE quote_ident(r.rolname) END FROM aclexplode(%s::aclitem[]) a "
            "LEFT JOIN pg_roles r ON r.oid = a.grantee", (_array(acl),)).fetchall()
    return sorted({"PUBLIC", *(r[0] for r in rows if r[0])})


def _items(conn: psycopg.Connection, acl: str) -> list[tuple[str, str, bool]]:
    with conn.cursor(row_factory=tuple_row) as cur:
        return [(r[0], r[1], r[2]) for r in cur.execute(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, "
            "a.privilege_type, a.is_grantable FROM aclexplode(%s::aclitem[]) "
            "WITH ORDINALITY a LEFT JOIN pg_roles r ON r.oid = a.grantee ORDER BY ordinality",
            (_array(acl),)).fetchall()]


def _current(conn: psycopg.Connection, key: str) -> str:
    """The key's value now, as the snapshot writes it."""
    from db.install.catalog_snapshot import snapshot_of

    return snapshot_of(conn, key)


def _restore_acl(conn: psycopg.Connection, kind: str, name: str, old: str) -> None:
    current = _current(conn, f"{kind}|{name}")
    if current == old:
        return
    obj = f"{_ACL_TARGET[kind]} {name}"
    conn.execute(f"REVOKE ALL ON {obj} FROM {', '.join(_grantees(conn, current))}")
    for grantee, priv, grantable in _items(conn, old):
        option = " WITH GRANT OPTION" if grantable else ""
        conn.execute(f"GRANT {priv} ON {obj} TO {grantee}{option}")


def _restore_column_acl(conn: psycopg.Connection, name: str, old: str) -> None:
    table, col = _split_last(name)
    current = _current(conn, f"colacl|{name}")
    if current == old:
        return
    if current:
        conn.execute(f"REVOKE ALL ({col}) ON TABLE {table} "
                     f"FROM {', '.join(_grantees(conn, current))}")
    for grantee, priv, grantable in _items(conn, old):
        option = " WITH GRANT OPTION" if grantable else ""
        conn.execute(f"GRANT {priv} ({col}) ON TABLE {table} TO {grantee}{option}")
