"""Shared fixtures: one throwaway PostgreSQL cluster per test run, migrated once.

Never the machine's own databases: the cluster lives in a temporary folder on
a free port and is removed at the end. pg_cron is preloaded when installed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from db.migrations import migrate
from tasks.embedded_postgres import EmbeddedPostgres, free_port
from tests.pg import connect

TEST_DATABASE = "regnotify_test"

# Tables emptied between tests, children first; stages and config are reset.
_TABLES = (
    "registration_notifications",
    "notification_queue",
    "registrations",
    "sms_opt_outs",
    "webhook_events",
)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EmbeddedPostgres]:
    """A private cluster for the whole run, with the migrations applied."""
    root = Path(tempfile.mkdtemp(prefix="regnotify-pg-"))
    cluster = EmbeddedPostgres(
        data_dir=root / "data",
        port=free_port(),
        database=TEST_DATABASE,
        # Durability is not what these tests are about; speed is welcome.
        settings={"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"},
    )
    if cluster._owner is not None:
        os.chown(root, cluster._owner.pw_uid, cluster._owner.pw_gid)
    try:
        cluster.start()
        migrate(cluster.url)
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(pg_cluster: EmbeddedPostgres) -> str:
    """URL of the migrated test database (superuser)."""
    return pg_cluster.url


@pytest.fixture()
def clean_db(database_url: str) -> Iterator[str]:
    """The test database, emptied of rows after the test."""
    yield database_url
    with connect(database_url) as conn:
        conn.execute(f"TRUNCATE {', '.join(_TABLES)} RESTART IDENTITY CASCADE")
        conn.execute(
            "UPDATE notification_config SET debounce_window = interval '5 minutes', "
            "max_wait = interval '30 minutes', relay_url = NULL, relay_token = NULL"
        )


@pytest.fixture()
def conn(clean_db: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """An autocommit superuser connection to the clean test database."""
    with connect(clean_db) as c:
        yield c


@pytest.fixture()
def cron_enabled(pg_cluster: EmbeddedPostgres) -> None:
    """Skip, with the reason, when the machine has no pg_cron package."""
    if not pg_cluster.cron:
        pytest.skip("pg_cron is not installed on this machine (apt-get install postgresql-15-cron)")
