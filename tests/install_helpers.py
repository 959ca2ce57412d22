"""Databases to install into and take regnotify out of: vanilla, Supabase-like, plain owner.

Each test gets a database of its own on the session's cluster, set up the
way tests/conftest.py sets up its three (which are migrated once and shared,
so they cannot be uninstalled). `seed_tables` gives it the seed plan's own
`registrations` (02-01) and `registration_notifications` (03-01), with
columns, rows, policies and grants of the dealership's.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from tests.conftest import PLAIN_OWNER, SUPABASE_OWNER, database_url_for
from tests.pg import connect

KINDS = ("vanilla", "supabase", "plain")


@dataclass(frozen=True)
class Db:
    """A test database: its superuser URL and the URL of the role that migrates it."""

    name: str
    admin_url: str
    owner_url: str
    kind: str


def _ensure_roles(c: psycopg.Connection) -> None:
    for role, extra in (("anon", ""), ("authenticated", ""), ("service_role", " BYPASSRLS")):
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            c.execute(f"CREATE ROLE {role} NOLOGIN NOINHERIT{extra}")


def _ensure_owner(c: psycopg.Connection, owner: str, attrs: str) -> None:
    if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone():
        c.execute(f"CREATE ROLE {owner} LOGIN NOSUPERUSER {attrs}")


def new_database(pg_cluster: Any, kind: str, template: str | None = None) -> Db:
    """An empty database set up as `kind` (or a copy of `template`); dropped by drop_database."""
    name = f"i34_{kind}_{uuid.uuid4().hex[:8]}"
    owner = {"vanilla": "postgres", "supabase": SUPABASE_OWNER, "plain": PLAIN_OWNER}[kind]
    with connect(pg_cluster.admin_url) as c:
        _ensure_roles(c)
        if kind == "supabase":
            _ensure_owner(c, owner, "CREATEROLE CREATEDB BYPASSRLS")
            c.execute(f"GRANT pg_monitor, anon, authenticated, service_role TO {owner}")
            c.execute(f'ALTER ROLE {owner} SET search_path TO "$user", public, extensions')
        elif kind == "plain":
            _ensure_owner(c, owner, "")
        tpl = f' TEMPLATE "{template}"' if template else ""
        c.execute(f'CREATE DATABASE "{name}" OWNER {owner}{tpl}')
    db = Db(name, database_url_for(pg_cluster, name), database_url_for(pg_cluster, name, owner),
            kind)
    if kind == "supabase" and template is None:
        _supabase_like(db, owner)
    return db


def _supabase_like(db: Db, owner: str) -> None:
    # As tests/conftest.py's supabase_database_url does it.
    with connect(db.admin_url) as c:
        c.execute(f"CREATE SCHEMA extensions AUTHORIZATION {owner}")
        c.execute("GRANT USAGE ON SCHEMA extensions TO anon, authenticated, service_role")
        c.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA extensions")
        c.execute("CREATE SCHEMA auth")
        c.execute(
            "CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$ SELECT coalesce("
            "nullif(current_setting('request.jwt.claim', true), ''), "
            "nullif(current_setting('request.jwt.claims', true), ''))::jsonb $$")
        c.execute(f"GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role, {owner}")
        c.execute("GRANT EXECUTE ON FUNCTION auth.jwt() "
                  f"TO anon, authenticated, service_role, {owner}")
        c.execute("GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role")
        for kind in ("TABLES", "FUNCTIONS", "SEQUENCES"):
            c.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
                      f"GRANT ALL ON {kind} TO anon, authenticated, service_role")


def drop_database(pg_cluster: Any, db: Db) -> None:
    """Remove a test database."""
    with connect(pg_cluster.admin_url) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')


@contextmanager
def database(pg_cluster: Any, kind: str, template: str | None = None) -> Iterator[Db]:
    """new_database, dropped after."""
    db = new_database(pg_cluster, kind, template)
    try:
        yield db
    finally:
        drop_database(pg_cluster, db)


# ── The seed plan's own tables ───────────────────────────────────────────────

SEED_DDL = """
CREATE TABLE public.registrations (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_name  text NOT NULL,
    customer_phone text,
    customer_email text,
    vin            text,
    vehicle_year   int,
    vehicle_make   text,
    vehicle_model  text,
    plate_number   text,
    current_stage  text NOT NULL DEFAULT 'sale_complete',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- The dealership's own, which regnotify knows nothing about.
    salesperson    text,
    deal_number    int NOT NULL DEFAULT 0
);
CREATE INDEX seed_registrations_salesperson ON public.registrations (salesperson);
CREATE TABLE public.registration_notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registration_id uuid NOT NULL REFERENCES public.registrations (id) ON DELETE CASCADE,
    channel         text NOT NULL CHECK (channel IN ('sms', 'email')),
    recipient       text,
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN (
                        'queued', 'sending', 'sent', 'delivered', 'undelivered',
                        'failed', 'bounced', 'complained', 'skipped')),
    attempts        int  NOT NULL DEFAULT 0,
    error_code      text,
    error_message   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    delivered_at    timestamptz,
    legacy_note     text
);
ALTER TABLE public.registrations ENABLE ROW LEVEL SECURITY;
CREATE POLICY seed_staff_all ON public.registrations FOR ALL TO authenticated
    USING (current_setting('request.jwt.claims', true)::jsonb ->> 'role' = 'staff');
-- Named as regnotify's 04 names one (which 12 then drops): it must come back.
CREATE POLICY customer_reads_own_registrations ON public.registrations
    FOR SELECT TO authenticated
    USING (customer_phone = current_setting('request.jwt.claims', true)::jsonb ->> 'phone');
GRANT SELECT ON public.registrations, public.registration_notifications TO authenticated;
GRANT SELECT, INSERT, UPDATE ON public.registrations TO service_role;
"""


def seed_tables(owner_url: str, rows: int = 1000) -> None:
    """The seed's two tables, owned by the migrating role, with `rows` rows each."""
    with connect(owner_url) as c:
        c.execute(SEED_DDL)
        c.execute(
            "INSERT INTO public.registrations (customer_name, customer_phone, customer_email, "
            "vin, vehicle_year, vehicle_make, vehicle_model, current_stage, salesperson, "
            "deal_number) "
            "SELECT 'Seed Customer ' || g, '+1555' || lpad(g::text, 7, '0'), "
            "'seed' || g || '@example.com', 'VIN' || g, 2000 + g %% 25, 'Ford', 'F-150', "
            "'sale_complete', 'rep' || g %% 7, g FROM generate_series(1, %s) AS g", (rows,))
        c.execute(
            "INSERT INTO public.registration_notifications (registration_id, channel, "
            "recipient, status, attempts, sent_at, legacy_note) "
            "SELECT id, 'sms', customer_phone, 'delivered', 1, now(), 'from the old system' "
            "FROM public.registrations")


def seed_rows(url: str) -> dict[str, list[dict]]:
    """Every row of the seed's tables, in the seed's own columns, by id."""
    with connect(url) as c:
        regs = c.execute(
            "SELECT id, customer_name, customer_phone, customer_email, vin, vehicle_year, "
            "vehicle_make, vehicle_model, plate_number, current_stage, created_at, "
            "updated_at, salesperson, deal_number FROM public.registrations "
            "ORDER BY id").fetchall()
        notes = c.execute(
            "SELECT id, registration_id, channel, recipient, status, attempts, error_code, "
            "error_message, created_at, updated_at, sent_at, delivered_at, legacy_note "
            "FROM public.registration_notifications ORDER BY id").fetchall()
    return {"registrations": regs, "registration_notifications": notes}


def columns(url: str, table: str) -> list[tuple[str, str]]:
    """(name, type) of a table's columns, in order."""
    with connect(url) as c:
        return [(r["attname"], r["t"]) for r in c.execute(
            "SELECT attname, format_type(atttypid, atttypmod) AS t FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum", (table,))]


# ── What "the same database" means ───────────────────────────────────────────

_PSQL_META = ("\\ddp", "\\dn+")

# psql's \dp, with one difference: an empty cell (a NULL ACL: the owner's
# default privileges) and the same privileges written out compare equal.
# PostgreSQL has no statement that sets an ACL back to NULL once something
# was granted or revoked (only a superuser's catalog edit could), so an
# uninstall that revokes what regnotify granted leaves the default written out.
_DP = """
SELECT n.nspname, c.relname, c.relkind,
       coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char",
                                     c.relowner))::text AS acl,
       (SELECT string_agg(a.attname || ':' || a.attacl::text, ' ' ORDER BY a.attnum)
        FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL
          AND NOT a.attisdropped) AS column_acl
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 2
"""


def schema_state(db: Db) -> str:
    """pg_dump --schema-only, the grants (as \\dp), default privileges (\\ddp), schema
    ACLs (\\dn+), policies, and the roles with their attributes and memberships."""
    dump = subprocess.run(["pg_dump", "--schema-only", "--no-comments", "-d", db.admin_url],
                          capture_output=True, text=True, check=True).stdout
    dump = "\n".join(line for line in dump.splitlines()
                     # \restrict carries a random key per run (pg_dump >= 15.14).
                     if not line.startswith(("-- Dumped", "\\restrict", "\\unrestrict")))
    meta = subprocess.run(
        ["psql", "-X", "-q", "-d", db.admin_url, *(a for m in _PSQL_META for a in ("-c", m))],
        capture_output=True, text=True, check=True).stdout
    with connect(db.admin_url) as c:
        grants = c.execute(_DP).fetchall()
        policies = c.execute(
            "SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual, "
            "with_check FROM pg_policies ORDER BY 1, 2, 3").fetchall()
        roles = c.execute(
            "SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolinherit, "
            "array(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "      WHERE m.member = r.oid ORDER BY 1)::text AS member_of "
            "FROM pg_roles r WHERE r.rolname IN ('anon', 'authenticated', 'service_role', "
            "%s, %s, 'postgres') ORDER BY 1", (SUPABASE_OWNER, PLAIN_OWNER)).fetchall()
    return "\n".join([dump, meta, *map(str, grants), *map(str, policies), *map(str, roles)])


_ORDER_AND_OWNERS = """
SELECT 'cols ' || c.oid::regclass::text || ' ' || string_agg(a.attname, ',' ORDER BY a.attnum)
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
GROUP BY c.oid
UNION ALL SELECT 'owner ' || c.oid::regclass::text || ' ' || c.relowner::regrole::text
FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
UNION ALL SELECT 'owner ' || p.oid::regprocedure::text || ' ' || p.proowner::regrole::text
FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
"""


def catalog_state(db: Db) -> str:
    """What schema_state compares, read in one query instead of pg_dump and psql.

    The runner's own catalog snapshot (every definition, grant, RLS switch,
    policy, trigger, role and membership), plus column order and owners.
    For comparing many times over; schema_state is the independent check.
    """
    from db.install.catalog_snapshot import snapshot

    with connect(db.admin_url) as c:
        lines = [f"{k} = {v}" for k, v in sorted(snapshot(c).items())]
        lines += sorted(r["?column?"] for r in c.execute(_ORDER_AND_OWNERS))
    return "\n".join(lines)


def first_difference(a: str, b: str) -> str:
    """The first differing lines, for an assertion message."""
    import difflib

    return "\n".join(list(difflib.unified_diff(a.splitlines(), b.splitlines(), "before",
                                               "after", lineterm="", n=2))[:60])
