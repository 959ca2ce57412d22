"""The ledger's home (schema regnotify) and migrating as owners that are not superusers."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.install.migrations import MigrationError, discover, migrate, status
from tasks.local.embedded_postgres import EmbeddedPostgres, free_port
from tests.conftest import (
    PLAIN_OWNER,
    SUPABASE_DATABASE,
    SUPABASE_OWNER,
    database_url_for,
    fresh_owned_database,
)
from tests.pg import as_role, connect

GRANTS_SNAPSHOT = """
SELECT string_agg(x, E'\\n' ORDER BY x) AS s FROM (
  SELECT 'tbl ' || c.relname || ' ' || coalesce(c.relacl::text, '') AS x
  FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL SELECT 'fn ' || p.oid::regprocedure::text || ' ' || coalesce(p.proacl::text, '')
  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
  UNION ALL SELECT 'col ' || attrelid::regclass::text || '.' || attname || ' '
         || attacl::text FROM pg_attribute WHERE attacl IS NOT NULL
         AND attrelid::regclass::text NOT LIKE 'pg\\_%'
  UNION ALL SELECT 'pol ' || tablename || '.' || policyname || ' ' || cmd || ' '
         || roles::text || ' ' || coalesce(qual, '') FROM pg_policies
  WHERE schemaname = 'public'
) t
"""


def test_an_old_public_ledger_is_moved_and_nothing_is_applied_again(pg_cluster):
    url = fresh_owned_database(pg_cluster, "oldledger", PLAIN_OWNER, "")
    files = discover()
    # What runners before migration 12 did (as a superuser, as on vanilla
    # installs: they could not get past 04 as anyone else): apply, record in public.
    with connect(url) as c:
        c.execute("CREATE TABLE public.regnotify_migrations (filename text PRIMARY KEY, "
                  "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        for f in files[:-1]:
            c.execute(f.sql)
            c.execute("INSERT INTO public.regnotify_migrations (filename, checksum) "
                      "VALUES (%s, %s)", (f.filename, f.checksum))

    assert migrate(url) == [files[-1].filename]
    with connect(url) as c:
        assert c.execute("SELECT to_regclass('public.regnotify_migrations') AS t"
                         ).fetchone()["t"] is None
        ledger = [r["filename"] for r in c.execute(
            "SELECT filename FROM regnotify.migrations ORDER BY filename")]
        assert ledger == [f.filename for f in files]
    assert {s.status for s in status(url)} == {"applied"}


def test_status_reads_a_ledger_not_moved_yet(pg_cluster):
    url = fresh_owned_database(pg_cluster, "statusold", PLAIN_OWNER, "")
    first = discover()[0]
    with connect(url) as c:
        c.execute("CREATE TABLE public.regnotify_migrations (filename text PRIMARY KEY, "
                  "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        c.execute("INSERT INTO public.regnotify_migrations (filename, checksum) VALUES (%s, %s)",
                  (first.filename, first.checksum))
    states = {s.filename: s.status for s in status(url)}
    assert states[first.filename] == "applied"


def test_anon_cannot_edit_the_ledger(supabase_database_url):
    with pytest.raises(Exception, match="permission denied"), as_role(
        supabase_database_url, "anon"
    ) as c:
        c.execute("DELETE FROM regnotify.migrations")


def test_04_reads_a_protected_setting_and_the_runner_copes(pg_cluster):
    if not pg_cluster.cron:
        pytest.skip("pg_cron is not installed: cron.database_name is not a protected setting")
    fresh_owned_database(pg_cluster, "plainowner", PLAIN_OWNER, "")
    owner_url = database_url_for(pg_cluster, "plainowner", PLAIN_OWNER)
    files = {f.filename: f for f in discover()}
    # The problem, as `psql -f` would meet it on RDS, Cloud SQL or Neon.
    with connect(owner_url) as c:
        for name in sorted(files)[:3]:
            c.execute(files[name].sql)
        with pytest.raises(Exception, match="pg_read_all_settings"):
            c.execute(files["04_notification_system.sql"].sql)
    # The runner applies it as it is and says why the setting reads as unset.
    seen: dict[str, list[str]] = {}
    migrate(owner_url, on_applied=lambda name, notices: seen.setdefault(name, notices))
    assert any("cron.database_name is not readable" in n
               for n in seen["04_notification_system.sql"])
    with connect(owner_url) as c:
        row = c.execute("SELECT rolsuper, pg_has_role(current_user, 'pg_read_all_settings', "
                        "'USAGE') AS reads FROM pg_roles WHERE rolname = current_user"
                        ).fetchone()
        assert row == {"rolsuper": False, "reads": False}
        assert c.execute("SELECT count(*) AS n FROM regnotify.migrations"
                         ).fetchone()["n"] == len(files)


def test_every_file_applies_again_as_the_supabase_owner_changing_nothing(
    supabase_database_url, pg_cluster
):
    owner_url = database_url_for(pg_cluster, SUPABASE_DATABASE, SUPABASE_OWNER)
    with connect(supabase_database_url) as c:
        before = c.execute(GRANTS_SNAPSHOT).fetchone()["s"]
    with connect(owner_url) as c:
        for f in discover():
            c.execute(f.sql)
    with connect(supabase_database_url) as c:
        after = c.execute(GRANTS_SNAPSHOT).fetchone()["s"]
    assert before == after


@pytest.fixture(scope="module")
def bare_cluster() -> Iterator[EmbeddedPostgres]:
    """A cluster of its own: no anon, authenticated or service_role yet."""
    root = Path(tempfile.mkdtemp(prefix="regnotify-bare-"))
    cluster = EmbeddedPostgres(data_dir=root / "data", port=free_port(), database="bare",
                               cron=False, settings={"fsync": "off"})
    cluster.chown(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def test_an_owner_who_cannot_create_the_roles_is_told_how(bare_cluster):
    fresh_owned_database(bare_cluster, "norole", "app_owner", "")
    with pytest.raises(MigrationError, match=r"CREATE ROLE anon NOLOGIN NOINHERIT;.*CREATEROLE"):
        migrate(database_url_for(bare_cluster, "norole", "app_owner"))


def test_an_owner_with_createrole_gets_the_roles_without_bypassrls(bare_cluster):
    # RDS's master user: CREATEROLE, not a superuser.
    fresh_owned_database(bare_cluster, "rds", "rds_master", "CREATEROLE")
    seen: dict[str, list[str]] = {}
    migrate(database_url_for(bare_cluster, "rds", "rds_master"),
            on_applied=lambda name, notices: seen.setdefault(name, notices))
    assert any("without BYPASSRLS" in n for n in seen["01_compat.sql"])
    url = database_url_for(bare_cluster, "rds")
    with connect(url) as c:
        roles = {r["rolname"]: r["rolbypassrls"] for r in c.execute(
            "SELECT rolname, rolbypassrls FROM pg_roles "
            "WHERE rolname IN ('anon', 'authenticated', 'service_role')")}
        assert roles == {"anon": False, "authenticated": False, "service_role": False}
        reg = c.execute("INSERT INTO registrations (customer_name) VALUES ('R') RETURNING id"
                        ).fetchone()["id"]
        c.execute("UPDATE registrations SET notification_pref = 'sms' WHERE id = %s", (reg,))
    # Without BYPASSRLS the backend still reaches what it needs, through policies.
    with as_role(url, "service_role", {"role": "service_role"}) as c:
        assert len(c.execute("SELECT * FROM registrations").fetchall()) == 1
        assert len(c.execute("SELECT * FROM notification_pref_changes").fetchall()) == 1
        assert c.execute("SELECT public.notification_tick() AS how").fetchone()["how"] == "notify"
