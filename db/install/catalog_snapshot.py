"""What the database holds, as `kind|name -> definition` pairs: the runner's eyes.

Before and after each migration the runner takes one of these; the
difference is what the file created and what it changed that was there
before (adopted). Undo and uninstall use the same pairs to drop what
regnotify created and to put back what it changed.

Keys (stable: undo files name them in `regnotify.adopted(key)`):

    schema|s            schemaacl|s         ext|name
    rel|s.t             relacl|s.t          rls|s.t
    col|s.t.c           colacl|s.t.c        con|s.t.name (tables and domains)
    trg|s.t.name        pol|s.t.name        type|s.name
    fn|s.name(args)     fnacl|s.name(args)  role|name
    member|role|member  cron|jobname

Objects that belong to an extension (pg_cron's schema cron, pg_net's net),
the runner's own schema `regnotify` and the schemas of Supabase's own
services are left out: they are not regnotify's to record.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import tuple_row


def _acl(column: str, default: str) -> str:
    """An ACL's items in their order, a NULL ACL as the default it stands for.

    The order is kept so that putting an ACL back gives the same text (psql's
    \\dp shows it as it is); compare with `same_acl` where order is noise.
    """
    return (f"(SELECT coalesce(pg_catalog.string_agg(x.i::text, ',' ORDER BY x.n), '') "
            f"FROM pg_catalog.unnest(coalesce({column}, {default})) WITH ORDINALITY "
            f"AS x(i, n))")


_NO_ACL = "'{}'::aclitem[]"
_REL_DEFAULT = ("pg_catalog.acldefault(CASE relkind WHEN 'S' THEN 's' ELSE 'r' END::\"char\", "
                "relowner)")
# Left out: the system's, the runner's own, and the schemas Supabase's services
# keep changing while they run (Realtime adds partitions, Storage and GoTrue
# migrate themselves): an object appearing there during a migration is not
# the migration's, and uninstall must never drop it.
_SYSTEM = ("('pg_catalog', 'information_schema', 'regnotify', 'pg_toast', 'realtime', "
           "'_realtime', 'storage', 'graphql', 'graphql_public', 'supabase_functions', "
           "'supabase_migrations', 'vault', 'pgsodium', 'pgsodium_masks', 'pgbouncer', "
           "'_analytics', 'net', 'cron')")

# One round trip. Definitions come from the server's own deparsers, so a
# value is what it takes to create the object again.
SNAPSHOT_SQL = f"""
WITH ns AS (
    SELECT n.oid, n.nspname, n.nspacl, n.nspowner FROM pg_catalog.pg_namespace n
    WHERE n.nspname NOT IN {_SYSTEM} AND n.nspname NOT LIKE 'pg\\_temp%'
      AND n.nspname NOT LIKE 'pg\\_toast%'
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_namespace'::regclass
                        AND d.objid = n.oid AND d.deptype = 'e')
),
rel AS (
    SELECT c.oid, c.relkind, c.relacl, c.relowner, c.relrowsecurity, c.relforcerowsecurity,
           pg_catalog.format('%I.%I', ns.nspname, c.relname) AS name
    FROM pg_catalog.pg_class c JOIN ns ON ns.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'i', 'I', 'f')
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_class'::regclass
                        AND d.objid = c.oid AND d.deptype = 'e')
),
fn AS (
    SELECT p.oid, p.proacl, p.proowner, p.prokind,
           pg_catalog.format('%I.%I(%s)', ns.nspname, p.proname,
                             pg_catalog.pg_get_function_identity_arguments(p.oid)) AS name
    FROM pg_catalog.pg_proc p JOIN ns ON ns.oid = p.pronamespace
    WHERE p.prokind IN ('f', 'p')
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                        AND d.objid = p.oid AND d.deptype = 'e')
)
SELECT 'schema|' || pg_catalog.quote_ident(nspname), '' FROM ns
UNION ALL SELECT 'schemaacl|' || pg_catalog.quote_ident(nspname),
       {_acl('nspacl', "pg_catalog.acldefault('n', nspowner)")}
FROM ns
UNION ALL SELECT 'ext|' || e.extname, e.extnamespace::regnamespace::text
FROM pg_catalog.pg_extension e WHERE e.extname <> 'plpgsql'
UNION ALL SELECT 'rel|' || name, relkind::text || CASE
    WHEN relkind IN ('i', 'I') THEN ' ' || pg_catalog.pg_get_indexdef(oid)
    WHEN relkind IN ('v', 'm') THEN ' ' || pg_catalog.md5(pg_catalog.pg_get_viewdef(oid))
    ELSE '' END
FROM rel
UNION ALL SELECT 'relacl|' || name,
       {_acl('relacl', _REL_DEFAULT)}
FROM rel
WHERE relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
UNION ALL SELECT 'rls|' || name, relrowsecurity::text || ',' || relforcerowsecurity::text
FROM rel WHERE relkind IN ('r', 'p')
UNION ALL SELECT 'col|' || rel.name || '.' || pg_catalog.quote_ident(a.attname),
       pg_catalog.format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')
       || CASE WHEN a.attidentity <> '' THEN ' IDENTITY ' || a.attidentity::text ELSE '' END
FROM rel JOIN pg_catalog.pg_attribute a ON a.attrelid = rel.oid
LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE rel.relkind IN ('r', 'p', 'f') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL SELECT 'colacl|' || rel.name || '.' || pg_catalog.quote_ident(a.attname),
       {_acl('a.attacl', _NO_ACL)}
FROM rel JOIN pg_catalog.pg_attribute a ON a.attrelid = rel.oid
WHERE rel.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL SELECT 'con|' || rel.name || '.' || pg_catalog.quote_ident(c.conname),
       pg_catalog.pg_get_constraintdef(c.oid)
FROM rel JOIN pg_catalog.pg_constraint c ON c.conrelid = rel.oid
UNION ALL SELECT 'con|' || pg_catalog.format('%I.%I', ns.nspname, t.typname) || '.'
       || pg_catalog.quote_ident(c.conname), pg_catalog.pg_get_constraintdef(c.oid)
FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_type t ON t.oid = c.contypid
JOIN ns ON ns.oid = t.typnamespace
UNION ALL SELECT 'trg|' || rel.name || '.' || pg_catalog.quote_ident(t.tgname),
       pg_catalog.pg_get_triggerdef(t.oid)
FROM rel JOIN pg_catalog.pg_trigger t ON t.tgrelid = rel.oid WHERE NOT t.tgisinternal
UNION ALL SELECT 'pol|' || rel.name || '.' || pg_catalog.quote_ident(p.polname),
       pg_catalog.format('CREATE POLICY %I ON %s AS %s FOR %s TO %s',
           p.polname, rel.name,
           CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
           CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                         WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
           (SELECT pg_catalog.string_agg(CASE WHEN r.r = 0 THEN 'PUBLIC'
                                             ELSE pg_catalog.quote_ident(ro.rolname) END,
                                        ', ' ORDER BY r.r)
            FROM pg_catalog.unnest(p.polroles) AS r(r)
            LEFT JOIN pg_catalog.pg_roles ro ON ro.oid = r.r))
       || coalesce(' USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')', '')
       || coalesce(' WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)
                   || ')', '')
FROM rel JOIN pg_catalog.pg_policy p ON p.polrelid = rel.oid
UNION ALL SELECT 'type|' || pg_catalog.format('%I.%I', ns.nspname, t.typname),
       t.typtype::text || ' ' || pg_catalog.format_type(t.typbasetype, t.typtypmod)
FROM pg_catalog.pg_type t JOIN ns ON ns.oid = t.typnamespace
WHERE t.typtype IN ('d', 'e') OR (t.typtype = 'c' AND EXISTS (
    SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
UNION ALL SELECT 'fn|' || name, pg_catalog.pg_get_functiondef(oid) FROM fn
UNION ALL SELECT 'fnacl|' || name,
       {_acl('proacl', "pg_catalog.acldefault('f', proowner)")} FROM fn
UNION ALL SELECT 'role|' || r.rolname, '' FROM pg_catalog.pg_roles r
WHERE r.rolname NOT LIKE 'pg\\_%'
UNION ALL SELECT 'member|' || g.rolname || '|' || m.rolname, ''
FROM pg_catalog.pg_auth_members am
JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
JOIN pg_catalog.pg_roles m ON m.oid = am.member
WHERE g.rolname NOT LIKE 'pg\\_%'
"""

_CRON_SQL = (
    "SELECT 'cron|' || jobname, schedule || E'\\n' || command FROM cron.job "
    "WHERE jobname IS NOT NULL AND username = current_user AND database = current_database()")


def snapshot(conn: psycopg.Connection) -> dict[str, str]:
    """Every recordable object of the database and the cluster's roles: key -> definition."""
    # Deparsed names come out schema-qualified whatever the caller's
    # search_path (a migration may have changed it), so keys and
    # definitions compare and replay the same everywhere.
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        saved = cur.execute("SELECT current_setting('search_path')").fetchone()
        cur.execute("SELECT set_config('search_path', 'pg_catalog', true)")
        out = {str(k): str(v) for k, v in cur.execute(SNAPSHOT_SQL).fetchall()}
        row = cur.execute("SELECT to_regclass('cron.job') IS NOT NULL").fetchone()
        if row and row[0]:
            out.update({str(k): str(v) for k, v in cur.execute(_CRON_SQL).fetchall()})
        cur.execute("SELECT set_config('search_path', %s, true)", (saved[0] if saved else "",))
    return out


def snapshot_of(conn: psycopg.Connection, key: str) -> str:
    """One key's value now ('' when absent)."""
    return snapshot(conn).get(key, "")


def normalized(snap: dict[str, str]) -> dict[str, str]:
    """The snapshot with each ACL's items sorted: equal when the privileges are."""
    return {k: ",".join(sorted(v.split(","))) if k.split("|", 1)[0].endswith("acl") else v
            for k, v in snap.items()}
