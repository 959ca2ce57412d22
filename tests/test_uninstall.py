"""`regnotify uninstall`: out as cleanly as in, on vanilla, Supabase-like and plain-owner databases.

The catalog (pg_dump --schema-only, \\dp, \\ddp, \\dn+, policies, the API roles and
their memberships) before install equals the same after uninstall, with the
seed's own tables present before install or not.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.install.migrations import migrate
from db.install.undo import uninstall
from tasks.cli.main import main
from tasks.local.embedded_postgres import EmbeddedPostgres, free_port
from tests.install_helpers import (
    KINDS,
    database,
    first_difference,
    schema_state,
    seed_tables,
)
from tests.pg import connect


def _some_history(url: str) -> None:
    """A stage change queued and a delivery recorded, as the pipeline leaves them."""
    with connect(url) as c:
        reg = c.execute("INSERT INTO registrations (customer_name, customer_phone) "
                        "VALUES ('Una Install', '+15557770001') RETURNING id").fetchone()["id"]
        c.execute("UPDATE registrations SET current_stage = 'documents_collected' "
                  "WHERE id = %s", (reg,))
        q = c.execute("SELECT id FROM notification_queue WHERE registration_id = %s",
                      (reg,)).fetchone()["id"]
        c.execute("INSERT INTO registration_notifications (registration_id, queue_id, channel, "
                  "recipient, status) VALUES (%s, %s, 'sms', '+15557770001', 'sent')", (reg, q))
        c.execute("INSERT INTO sms_opt_outs (phone, source) VALUES ('+15557770002', 'test')")


@pytest.mark.parametrize("seeded", [False, True], ids=["empty", "seed-tables"])
@pytest.mark.parametrize("kind", KINDS)
def test_uninstall_leaves_the_catalog_as_it_was_before_install(pg_cluster, kind, seeded):
    with database(pg_cluster, kind) as db:
        if seeded:
            seed_tables(db.owner_url, rows=20)
        before = schema_state(db)
        migrate(db.owner_url)
        _some_history(db.owner_url)
        report = uninstall(db.owner_url, drop_data=True)
        after = schema_state(db)
        assert before == after, first_difference(before, after)
        assert report.undone and report.undone == sorted(report.undone, reverse=True)
        with connect(db.admin_url) as c:
            assert c.execute("SELECT to_regnamespace('regnotify') AS s").fetchone()["s"] is None
        if seeded:
            assert "public.registrations" in report.kept
            assert "public.registration_notifications" in report.kept


def test_uninstall_refuses_without_drop_data_and_says_what_would_go(pg_cluster, capsys):
    with database(pg_cluster, "vanilla") as db:
        migrate(db.owner_url)
        installed = schema_state(db)
        code = main(["uninstall", "--yes", "--database-url", db.owner_url])
        out, err = capsys.readouterr()
        assert code == 2
        assert "--drop-data" in err and "nothing was removed" in err
        assert "04_notification_system: the notification queue (notification_queue)" in out
        assert "tables, views, indexes and sequences:" in out
        assert schema_state(db) == installed


def test_uninstall_asks_first_and_a_script_must_say_yes(pg_cluster, capsys, monkeypatch):
    with database(pg_cluster, "plain") as db:
        migrate(db.owner_url)
        installed = schema_state(db)
        # No terminal (as under a script or CI): refused, with the flag that fixes it.
        monkeypatch.setattr("sys.stdin.isatty", lambda: False)
        assert main(["uninstall", "--drop-data", "--database-url", db.owner_url]) == 2
        assert "add --yes" in capsys.readouterr().err
        # A person who answers anything but 'uninstall'.
        monkeypatch.setattr("sys.stdin.isatty", lambda: True)
        monkeypatch.setattr("builtins.input", lambda prompt: "y")
        assert main(["uninstall", "--drop-data", "--database-url", db.owner_url]) == 2
        assert schema_state(db) == installed
        monkeypatch.setattr("builtins.input", lambda prompt: "uninstall")
        assert main(["uninstall", "--drop-data", "--database-url", db.owner_url]) == 0
        out = capsys.readouterr().out
        assert "removed:" in out and "notification_queue" in out
        assert "dropped schema regnotify" in out
        assert main(["uninstall", "--yes", "--database-url", db.owner_url]) == 0
        assert "nothing to uninstall" in capsys.readouterr().out


def test_a_failing_uninstall_removes_nothing(pg_cluster):
    with database(pg_cluster, "vanilla") as db:
        migrate(db.owner_url)
        # Something of the dealership's that depends on regnotify's queue: the
        # drop is refused (no CASCADE), so the whole uninstall is rolled back.
        with connect(db.owner_url) as c:
            c.execute("CREATE VIEW public.my_report AS SELECT count(*) FROM notification_queue")
        installed = schema_state(db)
        from db.errors import MigrationError

        with pytest.raises(MigrationError, match=r"(?s)rolled back.*my_report"):
            uninstall(db.owner_url, drop_data=True)
        assert schema_state(db) == installed


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[EmbeddedPostgres]:
    """A cluster of its own: no API roles yet, and pg_cron serving its database (if installed)."""
    root = Path(tempfile.mkdtemp(prefix="regnotify-i34-"))
    cluster = EmbeddedPostgres(data_dir=root / "data", port=free_port(), database="dealer",
                               settings={"fsync": "off", "full_page_writes": "off"})
    cluster.chown(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def _globals(url: str) -> dict:
    with connect(url) as c:
        roles = [r["rolname"] for r in c.execute(
            "SELECT rolname FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%' ORDER BY 1")]
        exts = [r["extname"] for r in c.execute("SELECT extname FROM pg_extension ORDER BY 1")]
    return {"roles": roles, "extensions": exts}


def test_uninstall_drops_the_roles_cron_jobs_and_extensions_it_created(own_cluster):
    url = own_cluster.url
    before = _globals(url)
    assert "anon" not in before["roles"]
    migrate(url)
    with connect(url) as c:
        assert {"anon", "authenticated", "service_role"} <= set(_globals(url)["roles"])
        if own_cluster.cron:
            jobs = {r["jobname"] for r in c.execute("SELECT jobname FROM cron.job")}
            assert jobs == {"process-notification-queue", "regnotify-prune"}
    report = uninstall(url, drop_data=True)
    assert _globals(url) == before
    said = " ".join(report.removed)
    assert "role|anon" in said
    if own_cluster.cron:
        assert "cron|process-notification-queue" in said and "ext|pg_cron" in said


def test_a_role_another_database_uses_is_kept_and_said(own_cluster):
    url = own_cluster.url
    migrate(url)
    with connect(own_cluster.admin_url) as c:
        c.execute("DROP DATABASE IF EXISTS other WITH (FORCE)")
        c.execute("CREATE DATABASE other")
    other = url.rsplit("/", 1)[0] + "/other"
    with connect(other) as c:
        c.execute("CREATE TABLE theirs (id int)")
        c.execute("GRANT SELECT ON theirs TO authenticated")
    report = uninstall(url, drop_data=True)
    assert any("kept role authenticated" in k for k in report.kept), report.kept
    assert "authenticated" in _globals(url)["roles"]
    assert "anon" not in _globals(url)["roles"]
