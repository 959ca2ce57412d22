"""Retention: old processed queue rows, webhook events and our pg_cron
run history are pruned in small batches after the ages in notification_config;
the delivery history stays unless an age is set for it; stage updates keep
flowing while a million rows go."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest

from bench.prune import measure, seed
from db.connection import make_engine
from db.prune import KINDS, PRUNE_JOB_NAME, prune
from tasks.relay.ticker import Ticker, prune_unless_cron
from tests.cli_runner import cli
from tests.pg import as_role, connect, new_registration
from tests.test_migrations import fresh_database

DEFAULT_AGES = ("UPDATE notification_config SET retain_processed_queue = interval '30 days', "
                "retain_webhook_events = interval '14 days', "
                "retain_cron_history = interval '7 days', retain_deliveries = NULL")


#: A valid schedule that never fires (31 February).
NEVER = "0 0 31 2 *"


@pytest.fixture(scope="module", autouse=True)
def cron_prune_held(database_url):
    """The test cluster's real pg_cron job would prune these tests' old rows under them
    every five minutes: it stays scheduled and active, on a date that never comes."""
    with connect(database_url) as c:
        has_cron = c.execute("SELECT to_regclass('cron.job') IS NOT NULL AS ok").fetchone()["ok"]
        job = c.execute("SELECT schedule, command FROM cron.job WHERE jobname = %s",
                        (PRUNE_JOB_NAME,)).fetchone() if has_cron else None
        if job is not None:
            c.execute("SELECT cron.schedule(%s, %s, %s)", (PRUNE_JOB_NAME, NEVER, job["command"]))
    yield job
    if job is not None:
        with connect(database_url) as c:
            c.execute("SELECT cron.schedule(%s, %s, %s)",
                      (PRUNE_JOB_NAME, job["schedule"], job["command"]))


@pytest.fixture()
def db(conn):
    """The clean test database; the retention ages are back at their defaults after."""
    yield conn
    conn.execute(DEFAULT_AGES)


def _queue_row(conn, reg: str, *, sent: bool, days_ago: float, **extra) -> int:
    at = f"now() - interval '{days_ago} days'"
    row = conn.execute(
        "INSERT INTO notification_queue (registration_id, old_stage, new_stage, send_after, "
        f"sent, processed_at, created_at, updated_at) VALUES (%s, 'sale_complete', "
        f"'documents_collected', {at}, %s, CASE WHEN %s THEN {at} END, {at}, {at}) RETURNING id",
        (reg, sent, sent)).fetchone()
    return row["id"]


def _delivery(conn, reg: str, *, status: str, days_ago: float) -> int:
    return conn.execute(
        "INSERT INTO registration_notifications (registration_id, channel, recipient, status, "
        "created_at) VALUES (%s, 'sms', '+15551230001', %s, now() - make_interval(days => %s)) "
        "RETURNING id", (reg, status, days_ago)).fetchone()["id"]


def _ids(conn, table: str) -> set:
    key = "event_id" if table == "webhook_events" else "id"
    return {r[key] for r in conn.execute(f"SELECT {key} FROM {table}")}


def _prune(url: str, batch_size: int = 5000):
    engine = make_engine(url, pool_size=1)
    try:
        return prune(engine, batch_size=batch_size)
    finally:
        engine.dispose()


# ── Ages and objects ─────────────────────────────────────────────────────────


def test_ages_live_in_notification_config_with_the_documented_defaults(db):
    cfg = db.execute("SELECT retain_processed_queue, retain_webhook_events, "
                     "retain_cron_history, retain_deliveries FROM notification_config").fetchone()
    assert cfg == {"retain_processed_queue": timedelta(days=30),
                   "retain_webhook_events": timedelta(days=14),
                   "retain_cron_history": timedelta(days=7),
                   "retain_deliveries": None}
    with pytest.raises(Exception, match="notification_config_retention_positive"):
        db.execute("UPDATE notification_config SET retain_processed_queue = interval '0'")


def test_prune_functions_are_the_owners_alone_and_pin_search_path(db, clean_db):
    rows = db.execute(
        "SELECT p.oid::regprocedure::text AS fn, p.proconfig, p.prosecdef FROM pg_proc p "
        "WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'prune_notifications%'"
    ).fetchall()
    assert {r["fn"] for r in rows} == {"prune_notifications(integer)",
                                      "prune_notifications_preview()"}
    for r in rows:
        assert any(c.startswith("search_path=") for c in r["proconfig"] or []), r
        assert r["prosecdef"] is False
        for role in ("anon", "authenticated", "service_role"):
            assert not db.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE') AS ok",
                                  (role, r["fn"])).fetchone()["ok"], (role, r["fn"])
        # PUBLIC has no pg_roles row: it is grantee 0 in the ACL (NULL ACL: the default,
        # which grants PUBLIC EXECUTE).
        public = db.execute(
            "SELECT p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) AS a "
            "WHERE a.grantee = 0) AS granted FROM pg_proc AS p WHERE p.oid = %s::regprocedure",
            (r["fn"],)).fetchone()["granted"]
        assert not public, r["fn"]
    with as_role(clean_db, "service_role") as c, pytest.raises(Exception, match="permission"):
        c.execute("SELECT * FROM prune_notifications(10)")


def test_batch_size_is_checked(db):
    with pytest.raises(Exception, match=r"batch_size must be 1\.\.100000"):
        db.execute("SELECT * FROM prune_notifications(0)")


# ── What goes and what stays ─────────────────────────────────────────────────


def test_only_old_processed_rows_and_old_webhook_events_go(db, clean_db):
    reg = new_registration(db)
    other = new_registration(db, customer_phone="+15551230002")
    old = {_queue_row(db, reg, sent=True, days_ago=31 + i) for i in range(7)}
    young = {_queue_row(db, reg, sent=True, days_ago=29)}
    # A pending row is never pruned, however old.
    pending = {_queue_row(db, other, sent=False, days_ago=400)}
    db.execute("INSERT INTO webhook_events (provider, event_id, received_at) VALUES "
               "('twilio', 'old-1', now() - interval '15 days'), "
               "('resend', 'old-2', now() - interval '100 days'), "
               "('twilio', 'young', now() - interval '13 days')")
    history = {_delivery(db, reg, status="delivered", days_ago=400)}

    result = _prune(clean_db, batch_size=3)

    assert result.deleted["processed_queue"] == 7
    assert result.deleted["webhook_events"] == 2
    assert result.deleted["deliveries"] == 0
    # 7 rows at 3 a batch: batches of 3, 3, 1, then done.
    assert result.batches == 3
    assert _ids(db, "notification_queue") == young | pending
    assert _ids(db, "webhook_events") == {"young"}
    assert _ids(db, "registration_notifications") == history
    assert not old & _ids(db, "notification_queue")


def test_the_history_goes_only_when_an_age_is_set_and_never_while_moving(db, clean_db):
    reg = new_registration(db)
    final = {_delivery(db, reg, status=s, days_ago=100)
             for s in ("delivered", "failed", "skipped", "sent")}
    moving = {_delivery(db, reg, status=s, days_ago=100) for s in ("queued", "sending")}
    recent = {_delivery(db, reg, status="delivered", days_ago=10)}
    assert _prune(clean_db).deleted["deliveries"] == 0
    db.execute("UPDATE notification_config SET retain_deliveries = interval '90 days'")
    assert _prune(clean_db).deleted["deliveries"] == len(final)
    assert _ids(db, "registration_notifications") == moving | recent


def test_a_kind_with_no_age_is_kept(db, clean_db):
    reg = new_registration(db)
    kept = {_queue_row(db, reg, sent=True, days_ago=365)}
    db.execute("UPDATE notification_config SET retain_processed_queue = NULL")
    assert _prune(clean_db).deleted["processed_queue"] == 0
    assert _ids(db, "notification_queue") == kept


def test_the_ages_are_read_at_each_run(db, clean_db):
    reg = new_registration(db)
    _queue_row(db, reg, sent=True, days_ago=3)
    assert _prune(clean_db).total == 0
    db.execute("UPDATE notification_config SET retain_processed_queue = interval '2 days'")
    assert _prune(clean_db).deleted["processed_queue"] == 1


# ── pg_cron ──────────────────────────────────────────────────────────────────


def test_the_migration_schedules_the_prune(db, cron_enabled, cron_prune_held):
    # As the migration left it (before this module held it back).
    job = cron_prune_held
    assert job is not None
    assert job["schedule"] == "*/5 * * * *"
    assert db.execute("SELECT active FROM cron.job WHERE jobname = %s",
                      (PRUNE_JOB_NAME,)).fetchone()["active"]
    assert "public.prune_notifications(" in job["command"]


def test_our_jobs_run_history_goes_and_other_jobs_history_stays(db, clean_db, cron_enabled):
    ours = db.execute("SELECT jobid FROM cron.job WHERE jobname = 'process-notification-queue'"
                      ).fetchone()["jobid"]
    theirs = db.execute("SELECT cron.schedule('someone-elses-job', '0 3 * * *', 'SELECT 1') "
                        "AS id").fetchone()["id"]
    try:
        runs = {}
        for name, jobid in (("ours", ours), ("theirs", theirs)):
            for days in (8, 30, 1):
                runs[(name, days)] = db.execute(
                    "INSERT INTO cron.job_run_details (jobid, job_pid, database, username, "
                    "command, status, return_message, start_time, end_time) VALUES "
                    "(%s, 1, current_database(), current_user, 'SELECT 1', 'succeeded', "
                    "'SELECT 1', now() - make_interval(days => %s), "
                    "now() - make_interval(days => %s)) RETURNING runid",
                    (jobid, days, days)).fetchone()["runid"]
        mine = set(runs.values())
        dry = {c["kind"]: c for c in db.execute("SELECT * FROM prune_notifications_preview()")}
        assert dry["cron_history"]["due"] == 2
        assert dry["cron_history"]["older_than"] == timedelta(days=7)
        assert _prune(clean_db).deleted["cron_history"] == 2
        left = {r["runid"] for r in db.execute("SELECT runid FROM cron.job_run_details")} & mine
        assert left == {runs[("ours", 1)], runs[("theirs", 8)], runs[("theirs", 30)],
                        runs[("theirs", 1)]}
    finally:
        db.execute("SELECT cron.unschedule('someone-elses-job')")
        db.execute("DELETE FROM cron.job_run_details WHERE jobid = %s", (theirs,))


def test_without_pg_cron_the_migration_says_the_relay_prunes(pg_cluster):
    from db.install.migrations import migrate

    url = fresh_database(pg_cluster, "prune_nocron")
    seen: dict[str, list[str]] = {}
    migrate(url, on_applied=lambda name, notices: seen.setdefault(name, notices))
    notices = " ".join(seen["11_retention.sql"])
    assert "pg_cron is off" in notices and "relay prunes hourly" in notices
    with connect(url) as c:
        kinds = [r["kind"] for r in c.execute("SELECT kind FROM prune_notifications(10)")]
        assert kinds == list(KINDS)
        # Without pg_cron there is no run history to count, and no error.
        dry = {r["kind"]: r["due"]
               for r in c.execute("SELECT * FROM prune_notifications_preview()")}
        assert dry["cron_history"] == 0


# ── The relay's hourly prune ─────────────────────────────────────────────────


def test_the_relay_prunes_where_pg_cron_does_not(migrated_database, monkeypatch):
    from tasks.database import reset_engine
    from tasks.settings import get_settings

    url = migrated_database("prune_relay")
    with connect(url) as c:
        reg = new_registration(c)
        _queue_row(c, reg, sent=True, days_ago=40)
        young = _queue_row(c, reg, sent=True, days_ago=1)
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    reset_engine()
    try:
        prune_unless_cron()
        with connect(url) as c:
            assert _ids(c, "notification_queue") == {young}
    finally:
        get_settings.cache_clear()
        reset_engine()


def test_the_relay_leaves_pruning_to_pg_cron_where_it_runs(db, clean_db, cron_enabled,
                                                          monkeypatch):
    from tasks.database import reset_engine
    from tasks.settings import get_settings

    reg = new_registration(db)
    old = _queue_row(db, reg, sent=True, days_ago=40)
    monkeypatch.setenv("DATABASE_URL", clean_db)
    get_settings.cache_clear()
    reset_engine()
    try:
        prune_unless_cron()
    finally:
        get_settings.cache_clear()
        reset_engine()
    assert _ids(db, "notification_queue") == {old}


def test_the_ticker_prunes_at_most_once_per_period_and_never_holds_up_ticks():
    from tests.relay_helpers import wait_for

    ticks: list[float] = []
    prunes: list[float] = []
    release = threading.Event()

    def slow_prune() -> None:
        prunes.append(time.monotonic())
        if len(prunes) == 1:
            release.wait(10)  # a long first prune: ticks go on, no second prune starts

    ticker = Ticker(lambda source: ticks.append(time.monotonic()), interval_s=0.05, mode="on",
                    prune=slow_prune, prune_every_s=0.3, prune_first_s=0.05)
    ticker.start()
    try:
        wait_for(lambda: len(prunes) == 1, timeout=5)
        during = len(ticks)
        time.sleep(0.8)  # longer than the period
        assert len(prunes) == 1
        assert len(ticks) > during + 3
        release.set()
        wait_for(lambda: len(prunes) >= 3, timeout=5)
    finally:
        release.set()
        ticker.stop()
    assert ticker.prunes == len(prunes)
    # Once the long prune was over, the next came at once, then one period later.
    assert prunes[2] - prunes[1] >= 0.25, prunes


# ── The command ──────────────────────────────────────────────────────────────


def test_dry_run_says_what_would_go_and_deletes_nothing(db, clean_db, capsys):
    reg = new_registration(db)
    for days in (31, 45):
        _queue_row(db, reg, sent=True, days_ago=days)
    _queue_row(db, reg, sent=True, days_ago=2)
    db.execute("INSERT INTO webhook_events (provider, event_id, received_at) "
               "VALUES ('twilio', 'e1', now() - interval '20 days')")
    code, out, err = cli(capsys, "prune", "--dry-run", "--database-url", clean_db)
    assert code == 0, err
    assert "Dry run: 3 row(s) would be deleted; nothing changed." in out
    assert "processed queue rows: 2 older than 30 days, oldest " in out
    assert "webhook events: 1 older than 14 days" in out
    assert "pg_cron run history (our jobs): " in out and "older than 7 days" in out
    assert "delivery history: kept forever (set notification_config.retain_deliveries" in out
    assert len(_ids(db, "notification_queue")) == 3
    code, out, _ = cli(capsys, "prune", "--dry-run", "--json", "--database-url", clean_db)
    assert code == 0
    doc = json.loads(out)
    assert {k["kind"]: k["rows"] for k in doc["kinds"]}["processed_queue"] == 2


def test_prune_prints_its_batches_and_what_went(db, clean_db, capsys):
    reg = new_registration(db)
    for days in range(31, 38):
        _queue_row(db, reg, sent=True, days_ago=days)
    code, out, err = cli(capsys, "prune", "--batch-size", "3", "--database-url", clean_db)
    assert code == 0, err
    assert "  batch 1: processed queue rows 3" in out
    assert "  batch 3: processed queue rows 1" in out
    assert "Pruned 7 row(s) in 3 batch(es)" in out
    code, out, _ = cli(capsys, "prune", "--database-url", clean_db)
    assert code == 0 and "Nothing to prune." in out


def test_prune_errors_are_one_line(pg_cluster, clean_db, capsys):
    code, _, err = cli(capsys, "prune", "--batch-size", "0", "--database-url", clean_db)
    assert code == 2 and "--batch-size must be between 1 and 100000" in err
    assert len(err.strip().splitlines()) == 1
    url = fresh_database(pg_cluster, "prune_unmigrated")
    code, _, err = cli(capsys, "prune", "--dry-run", "--database-url", url)
    assert code == 2 and "run `regnotify migrate`" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    # A role that is not the owner (the cluster trusts loopback logins).
    with connect(clean_db) as c:
        c.execute("DROP ROLE IF EXISTS prune_outsider")
        c.execute("CREATE ROLE prune_outsider LOGIN")
    try:
        outsider = clean_db.replace("://postgres@", "://prune_outsider@", 1)
        code, _, err = cli(capsys, "prune", "--database-url", outsider)
        assert code == 2 and "may not prune: connect as the database owner" in err, err
    finally:
        with connect(clean_db) as c:
            c.execute("DROP ROLE prune_outsider")


# ── A million old rows, stage updates flowing ────────────────────────────────


def test_a_million_old_rows_go_while_stage_updates_flow(db, clean_db):
    seeded = seed(clean_db, old_rows=1_000_000, registrations=500, young_rows=2000,
                  old_webhooks=20_000, young_webhooks=300)
    figures = measure(clean_db, batch_size=5000)

    assert figures.deleted == seeded.old_processed + seeded.old_webhooks
    # Stage UPDATEs kept flowing: many went through during the prune, none
    # waited long (generous for a shared two-core machine; typically < 0.1 s).
    assert figures.updates >= 20, figures
    assert figures.worst_update_s < 2.0, figures
    counts = db.execute(
        "SELECT count(*) FILTER (WHERE sent) AS processed, "
        "count(*) FILTER (WHERE NOT sent) AS pending, "
        "count(*) FILTER (WHERE sent AND processed_at < now() - interval '30 days') AS old "
        "FROM notification_queue").fetchone()
    assert counts == {"processed": seeded.young_processed, "pending": seeded.registrations,
                      "old": 0}
    assert db.execute("SELECT count(*) AS n FROM webhook_events").fetchone()["n"] \
        == seeded.young_webhooks
    # Every pending row carries the stage its registration was last moved to.
    stale = db.execute(
        "SELECT count(*) AS n FROM notification_queue q JOIN registrations r "
        "ON r.id = q.registration_id WHERE NOT q.sent AND q.new_stage <> r.current_stage"
    ).fetchone()["n"]
    assert stale == 0
