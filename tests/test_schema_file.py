"""sql/schema.sql is what the migrations build: a fresh database, migrated, dumps to it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from db.install import schema_file
from tests.pg import connect

_DATABASE = "regnotify_schema_file"


@pytest.fixture()
def fresh_dump(migrated_database: Callable[[str], str]) -> Callable[..., str]:
    """`fresh_dump(*extra_sql)`: the normalised schema of a freshly migrated database."""

    def dump(*extra_sql: str) -> str:
        url = migrated_database(_DATABASE)
        with connect(url) as conn:
            for statement in extra_sql:
                conn.execute(statement)
        try:
            return schema_file.dump_schema(url)
        except schema_file.SchemaDumpError as exc:
            pytest.skip(str(exc))

    return dump


def test_schema_file_matches_the_migrations(fresh_dump: Callable[..., str]) -> None:
    path = schema_file.schema_path()
    assert path.is_file(), f"{path} is missing: run {schema_file.REGENERATE}"
    checked_in = path.read_text()
    found = fresh_dump()
    made_on, here = schema_file.written_major(checked_in), schema_file.written_major(found)
    if made_on != here:
        pytest.skip(f"sql/schema.sql was made on PostgreSQL {made_on}, this cluster is {here}: "
                    "pg_dump's text differs between majors")
    assert checked_in == found, (
        f"sql/schema.sql differs from what the migrations build: run {schema_file.REGENERATE}\n"
        + schema_file.differences(checked_in, found)
    )


def test_a_new_object_shows_in_the_dump(fresh_dump: Callable[..., str]) -> None:
    # What a new migration would do: the dump (so the check) sees it, grants included.
    found = fresh_dump(
        "CREATE TABLE public.schema_file_probe (id bigint PRIMARY KEY)",
        "GRANT SELECT ON public.schema_file_probe TO authenticated",
    )
    assert "CREATE TABLE public.schema_file_probe" in found
    assert "GRANT SELECT ON TABLE public.schema_file_probe TO authenticated;" in found
    assert found != schema_file.schema_path().read_text()


def test_the_file_holds_every_kind_of_object_and_no_noise() -> None:
    text = schema_file.schema_path().read_text()
    for kind in ("TABLE", "FUNCTION", "TRIGGER", "INDEX", "POLICY", "CONSTRAINT", "ACL"):
        assert f"\n-- {kind} " in text, kind
    assert "CREATE ROLE service_role" in text
    assert "CREATE TABLE regnotify.migrations" in text  # the runner's ledger is ours too
    for noise in ("Owner:", "\\restrict", "Dumped from", "Dumped by", "OWNER TO",
                  "CREATE EXTENSION", "SET statement_timeout"):
        assert noise not in text, noise


def test_normalise_drops_what_varies_between_runs() -> None:
    raw = (
        "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\n"
        "-- Dumped from database version 15.20\n\nSET lock_timeout = 0;\n\n"
        "--\n-- Name: pg_cron; Type: EXTENSION; Schema: -; Owner: -\n--\n\n"
        "CREATE EXTENSION IF NOT EXISTS pg_cron WITH SCHEMA pg_catalog;\n\n\n"
        "--\n-- Name: EXTENSION pg_cron; Type: COMMENT; Schema: -; Owner: \n--\n\n"
        "COMMENT ON EXTENSION pg_cron IS 'jobs';\n\n\n"
        "SET default_tablespace = '';\n\n"
        "--\n-- Name: t; Type: TABLE; Schema: public; Owner: -\n--\n\n"
        "CREATE TABLE public.t (\n    id integer   \n);\n\n\n\n"
        "--\n-- Name: TABLE t; Type: ACL; Schema: public; Owner: -\n--\n\n"
        "GRANT SELECT ON TABLE public.t TO anon;\n\n\n"
        "--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc123\n\n"
    )
    assert schema_file.normalise(raw) == (
        "-- TABLE public.t\n\nCREATE TABLE public.t (\n    id integer\n);\n\n"
        "-- ACL TABLE public.t\n\nGRANT SELECT ON TABLE public.t TO anon;\n"
    )
