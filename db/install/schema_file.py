"""sql/schema.sql: every object the migrations leave behind, in one readable file.

The migrations are history (each file changes what the ones before made);
this file is the result: tables, columns, constraints, indexes, functions,
triggers, policies, grants and the roles they are granted to, as
`pg_dump --schema-only` prints them for a fresh database migrated by a
superuser, with the noise taken out (ownership, pg_dump's version and session
lines, the random `\\restrict` key) so that the same migrations always give
the same text. Extensions, and whatever belongs to them, are left out: they
are PostgreSQL's or Supabase's, not ours.

`scripts/schema` writes the file (it starts a throwaway cluster for it);
tests/test_schema_file.py fails when the file and the migrations disagree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import psycopg

from db.connection import libpq_url
from db.sql_files import sql_root

#: The command that brings the file up to date, as the check tells it.
REGENERATE = "scripts/schema"

_HEADER = """\
-- regnotify's schema as it stands after the last file in sql/migrations/.
--
-- Generated: run {regenerate} after adding a migration, never edit by hand
-- (tests/test_schema_file.py fails when this file and the migrations differ).
-- Made from a fresh vanilla PostgreSQL {major} database migrated by a
-- superuser, as `pg_dump --schema-only --no-owner` prints it, without its
-- session settings. There, 01_compat creates the API roles, schema auth and
-- auth.jwt(); on Supabase those are Supabase's own and 01 leaves them alone.
-- pg_cron's jobs (04, 11) are rows of the extension, not schema: not here.
"""

_MAJOR_LINE = re.compile(r"^-- Made from a fresh vanilla PostgreSQL (\d+) ", re.MULTILINE)

# pg_dump's comment above each object: "-- Name: x; Type: T; Schema: s; Owner: o".
_ENTRY = re.compile(
    r"^--\n-- (?:Data for )?Name: (?P<name>.*?); Type: (?P<type>[A-Z ]+); "
    r"Schema: (?P<schema>[^;]*); Owner: [^\n]*\n--\n",
    re.MULTILINE,
)

# Session lines pg_dump writes between entries (before the first table).
_SESSION_LINE = re.compile(r"^(SET default_tablespace|SET default_table_access_method)\b.*\n",
                           re.MULTILINE)

# Roles named by a grant or a policy on anything in this database.
_GRANTEE_ROLES = """
WITH named(role) AS (
    SELECT (pg_catalog.aclexplode(c.relacl)).grantee FROM pg_catalog.pg_class c
    UNION SELECT (pg_catalog.aclexplode(a.attacl)).grantee FROM pg_catalog.pg_attribute a
        WHERE a.attacl IS NOT NULL
    UNION SELECT (pg_catalog.aclexplode(p.proacl)).grantee FROM pg_catalog.pg_proc p
    UNION SELECT (pg_catalog.aclexplode(n.nspacl)).grantee FROM pg_catalog.pg_namespace n
    UNION SELECT (pg_catalog.aclexplode(t.typacl)).grantee FROM pg_catalog.pg_type t
    UNION SELECT pg_catalog.unnest(pol.polroles) FROM pg_catalog.pg_policy pol
)
SELECT r.rolname, r.rolcanlogin, r.rolinherit, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb
FROM pg_catalog.pg_roles r
WHERE r.oid IN (SELECT role FROM named)
  AND NOT r.rolsuper
  AND r.rolname NOT LIKE 'pg\\_%'
  AND r.oid <> (SELECT d.datdba FROM pg_catalog.pg_database d
                WHERE d.datname = pg_catalog.current_database())
ORDER BY r.rolname
"""

_MEMBERSHIPS = """
SELECT g.rolname AS granted, m.rolname AS member
FROM pg_catalog.pg_auth_members am
JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
JOIN pg_catalog.pg_roles m ON m.oid = am.member
WHERE g.rolname = ANY(%(roles)s) AND m.rolname = ANY(%(roles)s)
ORDER BY 1, 2
"""


class SchemaDumpError(RuntimeError):
    """The schema could not be dumped here (no pg_dump for the server's major)."""


def schema_path() -> Path:
    """The checked-in file: sql/schema.sql."""
    return sql_root() / "schema.sql"


def server_major(database_url: str) -> int:
    """The major version of the server at `database_url` (15, 16 ...)."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    return int(row[0]) // 10000


def find_pg_dump(major: int) -> str:
    """A pg_dump of `major` ($REGNOTIFY_PG_DUMP, the system's, or PATH's if its major matches).

    pg_dump's text differs from one major to the next, and an older pg_dump
    refuses a newer server: the file is only comparable when made by the
    server's own major.
    """
    override = os.environ.get("REGNOTIFY_PG_DUMP")
    candidates = [override] if override else []
    candidates += [f"/usr/lib/postgresql/{major}/bin/pg_dump", shutil.which("pg_dump") or ""]
    for candidate in filter(None, candidates):
        if Path(candidate).is_file() and _major_of(candidate) == major:
            return candidate
    raise SchemaDumpError(
        f"no pg_dump for PostgreSQL {major} here (looked in /usr/lib/postgresql/{major}/bin "
        "and on PATH; REGNOTIFY_PG_DUMP names one)"
    )


def _major_of(pg_dump: str) -> int | None:
    try:
        out = subprocess.run([pg_dump, "--version"], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    match = re.search(r"\)\s+(\d+)", out)
    return int(match.group(1)) if match else None


def written_major(text: str) -> int | None:
    """The PostgreSQL major a schema file's header says it was made on."""
    match = _MAJOR_LINE.search(text)
    return int(match.group(1)) if match else None


def dump_schema(database_url: str) -> str:
    """The normalised schema of the (migrated) database at `database_url`: the file's text."""
    major = server_major(database_url)
    pg_dump = find_pg_dump(major)
    raw = subprocess.run(
        [pg_dump, "--schema-only", "--no-owner", "--no-tablespaces",
         "--dbname", libpq_url(database_url)],
        capture_output=True, text=True, check=False,
    )
    if raw.returncode != 0:
        raise SchemaDumpError(f"pg_dump failed: {raw.stderr.strip()}")
    header = _HEADER.format(regenerate=REGENERATE, major=major)
    return "\n".join([header, _roles(database_url), normalise(raw.stdout)])


def _roles(database_url: str) -> str:
    lines = ["-- Roles (cluster-wide: created by 01_compat where missing)", ""]
    with psycopg.connect(libpq_url(database_url)) as conn:
        rows = conn.execute(_GRANTEE_ROLES).fetchall()
        names = [row[0] for row in rows]
        for name, login, inherit, bypassrls, createrole, createdb in rows:
            attrs = ["LOGIN" if login else "NOLOGIN", "INHERIT" if inherit else "NOINHERIT"]
            attrs += [word for flag, word in ((bypassrls, "BYPASSRLS"),
                                              (createrole, "CREATEROLE"),
                                              (createdb, "CREATEDB")) if flag]
            lines.append(f"CREATE ROLE {name} {' '.join(attrs)};")
        for granted, member in conn.execute(_MEMBERSHIPS, {"roles": names}).fetchall():
            lines.append(f"GRANT {granted} TO {member};")
    return "\n".join(lines) + "\n"


def normalise(dump: str) -> str:
    """pg_dump's text without what varies between runs or is not ours.

    Kept: every entry, in pg_dump's order (by kind, then name, dependencies
    first), each under a one-line `-- KIND schema.name` title. Dropped: the
    preamble and footer, `\\restrict` lines, session settings, extensions.
    """
    dump = re.sub(r"^\\(?:un)?restrict .*\n", "", dump, flags=re.MULTILINE)
    dump = _SESSION_LINE.sub("", dump)
    matches = list(_ENTRY.finditer(dump))
    parts: list[str] = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(dump)
        body = dump[match.end():end]
        kind, name, schema = match["type"], match["name"], match["schema"]
        if kind == "EXTENSION" or name.startswith("EXTENSION "):
            continue
        body = body.split("\n--\n-- PostgreSQL database dump complete\n--", 1)[0]
        title = _title(name, schema)
        parts.append(f"-- {kind} {title}\n\n{_tidy(body)}")
    return "\n\n".join(parts) + "\n"


def _title(name: str, schema: str) -> str:
    # An ACL's or a comment's name starts with the kind of its object
    # ("FUNCTION jwt()"): the schema goes before the object, not the kind.
    if schema == "-":
        return name
    kind, _, rest = name.partition(" ")
    if kind.isupper() and rest:
        return f"{kind} {schema}.{rest}"
    return f"{schema}.{name}"


def _tidy(body: str) -> str:
    lines = [line.rstrip() for line in body.strip("\n").split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text)


def differences(expected: str, found: str, *, context: int = 40) -> str:
    """The first `context` lines of a unified diff, checked-in file first."""
    import difflib

    diff = difflib.unified_diff(expected.splitlines(), found.splitlines(),
                                "sql/schema.sql (checked in)", "the migrations", lineterm="", n=2)
    lines = list(diff)
    more = f"\n... {len(lines) - context} more diff lines" if len(lines) > context else ""
    return "\n".join(lines[:context]) + more


def write(database_url: str, path: Path | None = None) -> Path:
    """Write the schema of the migrated database at `database_url` to `path` (sql/schema.sql)."""
    target = path or schema_path()
    target.write_text(dump_schema(database_url))
    return target
