"""Installing over the seed's own `registrations` and `registration_notifications`.

The seed plan's project has both tables, with rows, columns, policies and
grants of its own, before migration 04. regnotify adopts them: every row
stays, the pipeline runs on them (stage change -> queue -> a text and an
e-mail through the real SDKs to the wire stand-ins), and uninstall leaves
the 1,000 rows and their columns as they were. A column that cannot take
the migrations stops them before anything changes, naming it and the fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from db.errors import MigrationError
from db.install.migrations import migrate
from db.install.undo import uninstall
from tests.conftest import QUIET_HOURS_OFF, provider_env, reset_process_state
from tests.flow import change_stage, make_due, run_tick
from tests.install_helpers import (
    KINDS,
    columns,
    database,
    first_difference,
    schema_state,
    seed_rows,
    seed_tables,
)
from tests.pg import connect
from tests.wire.resend_wire import ResendSdkState

SEED_ROWS = 1000


@contextmanager
def eager_pipeline(url: str, redis_url: str, twilio, resend_, monkeypatch) -> Iterator[None]:
    """conftest's `pipeline`, pointed at this test's own database."""
    from tasks.broker.app import app

    state = ResendSdkState.capture()
    for key, value in provider_env(url, redis_url, twilio, resend_).items():
        monkeypatch.setenv(key, value)
    reset_process_state()
    saved = {k: app.conf.get(k) for k in ("task_always_eager", "task_eager_propagates")}
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = False
    try:
        yield
    finally:
        app.conf.update(saved)
        monkeypatch.undo()
        reset_process_state()
        state.restore()


@pytest.mark.parametrize("kind", KINDS)
def test_the_seed_tables_are_adopted_used_and_left_as_they_were(
    pg_cluster, kind, redis_server, twilio_wire, resend_wire, monkeypatch
):
    with database(pg_cluster, kind) as db:
        seed_tables(db.owner_url, rows=SEED_ROWS)
        rows = seed_rows(db.owner_url)
        cols = {t: columns(db.admin_url, f"public.{t}")
                for t in ("registrations", "registration_notifications")}

        migrate(db.owner_url)
        assert seed_rows(db.owner_url) == rows  # every row, every value of its own
        with connect(db.admin_url) as c:
            c.execute(QUIET_HOURS_OFF)
            adopted = {r["key"] for r in c.execute(
                "SELECT key FROM regnotify.baseline WHERE regnotify.adopted(key) "
                "AND key LIKE 'rel|public.registration%'")}
        assert {"rel|public.registrations", "rel|public.registration_notifications"} <= adopted

        moved = [r["id"] for r in rows["registrations"][:3]]
        with eager_pipeline(db.owner_url, redis_server.url, twilio_wire, resend_wire,
                            monkeypatch), connect(db.owner_url) as c:
            for reg in moved:
                change_stage(c, reg, "documents_collected")
            assert c.execute("SELECT count(*) AS n FROM notification_queue WHERE NOT sent"
                             ).fetchone()["n"] == 3
            make_due(c)
            run_tick()
            sent = c.execute(
                "SELECT channel, status, legacy_note FROM registration_notifications "
                "WHERE queue_id IS NOT NULL ORDER BY channel").fetchall()
        assert [(r["channel"], r["status"]) for r in sent] == [("email", "sent")] * 3 + [
            ("sms", "sent")] * 3
        assert twilio_wire.accepted_count() == 3 and resend_wire.accepted_count() == 3

        report = uninstall(db.owner_url, drop_data=True)
        assert "public.registrations" in report.kept
        after = seed_rows(db.owner_url)
        # The seed's rows as they were, but for the stage staff changed (theirs to keep).
        expected = [dict(r, current_stage="documents_collected", updated_at=None)
                    if r["id"] in moved else r for r in rows["registrations"]]
        got = [dict(r, updated_at=None) if r["id"] in moved else r
               for r in after["registrations"]]
        assert got == expected
        # The dealership's delivery history: its 1,000 rows untouched; the six
        # messages regnotify recorded in it stay too (rows of an adopted table).
        assert after["registration_notifications"][:SEED_ROWS] == rows[
            "registration_notifications"]
        assert len(after["registration_notifications"]) == SEED_ROWS + 6
        for table, before in cols.items():
            assert columns(db.admin_url, f"public.{table}") == before


@pytest.mark.parametrize(
    ("ddl", "says"),
    [
        ("ALTER TABLE public.registrations ALTER COLUMN vehicle_year TYPE text",
         r"registrations\.vehicle_year is text where regnotify needs integer: convert it "
         r"\(ALTER TABLE public\.registrations ALTER COLUMN vehicle_year TYPE integer"),
        ("ALTER TABLE public.registration_notifications "
         "DROP CONSTRAINT registration_notifications_status_check, "
         "ADD CONSTRAINT registration_notifications_status_check "
         "CHECK (status IN ('queued', 'sent', 'delivered', 'failed'))",
         r"registration_notifications\.status: registration_notifications_status_check "
         r"refuses 'sending', a value regnotify writes: widen it"),
        ("ALTER TABLE public.registration_notifications ADD COLUMN template text NOT NULL "
         "DEFAULT 'x'; ALTER TABLE public.registration_notifications "
         "ALTER COLUMN template DROP DEFAULT",
         r"registration_notifications\.template is NOT NULL without a default and "
         r"regnotify's rows do not fill it"),
        ("ALTER TABLE public.registration_notifications ADD COLUMN parked text",
         r"registration_notifications\.parked is text where regnotify needs boolean"),
        ("ALTER TABLE public.registrations DROP COLUMN customer_phone CASCADE",
         r"registrations\.customer_phone is missing: regnotify needs it \(text\); add it with "
         r"ALTER TABLE public\.registrations ADD COLUMN customer_phone text;"),
    ],
    ids=["type", "check", "not-null", "added-column-type", "missing"],
)
def test_a_conflicting_column_stops_the_install_before_anything_changes(pg_cluster, ddl, says):
    with database(pg_cluster, "plain") as db:
        seed_tables(db.owner_url, rows=10)
        with connect(db.owner_url) as c:
            c.execute(ddl)
        before = schema_state(db)
        with pytest.raises(MigrationError, match=says) as refused:
            migrate(db.owner_url)
        assert "nothing was changed" in str(refused.value)
        assert "run regnotify migrate again" in str(refused.value)
        after = schema_state(db)
        assert before == after, first_difference(before, after)
