"""Shared fixtures: one throwaway PostgreSQL cluster per test process, migrated once.

Never the machine's own databases: the cluster lives in a temporary folder on
a free port and is removed at the end. pg_cron is preloaded when installed.

`scripts/test` runs the suite on several processes (pytest-xdist). Each is a
separate pytest session, so every session-scoped fixture below (the cluster,
Redis, the wires) exists once per process, on its own free ports: tests never
share a database or a broker with a test running at the same time, and a test
that restarts "the" PostgreSQL or Redis only restarts its own process's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery import Celery

from db.install.migrations import migrate
from tasks.local.embedded_postgres import EmbeddedPostgres, free_port
from tasks.local.embedded_redis import EmbeddedRedis
from tests.pg import connect
from tests.wire.resend_wire import ResendSdkState, ResendWire
from tests.wire.twilio_wire import TwilioWire

TEST_DATABASE = "regnotify_test"

# Tables emptied between tests, children first; stages and config are reset.
_TABLES = (
    "registration_notifications",
    "notification_queue",
    "registrations",
    "sms_opt_outs",
    "webhook_events",
    "inbound_messages",
    "reply_digests",
    "seen_message_sids",
    "staff_members",
)


# Quiet hours are on by default (21:00-08:00 America/Chicago): a suite run at
# night would hold every text. Tests of quiet hours turn them on themselves.
QUIET_HOURS_OFF = (
    "UPDATE notification_config SET quiet_hours_channels = '{}', "
    "quiet_hours_start = '21:00', quiet_hours_end = '08:00', "
    "default_time_zone = 'America/Chicago', fallback_enabled = true"
)


def worker_name() -> str:
    """This test process's name under pytest-xdist ("gw0", "gw1" ...), "main" without it."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


#: What GNU readline rewrites in an xdist worker (pdb imports it there, where
#: stdin is not a terminal: 80 x 24). Commands that size their output by the
#: terminal must see what the run itself was started with.
_TERMINAL_ENV = ("COLUMNS", "LINES")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(pytest-xdist, in the controller) Hand each worker the terminal's environment."""
    node.workerinput["regnotify_terminal_env"] = {k: os.environ.get(k) for k in _TERMINAL_ENV}


@pytest.fixture(scope="session", autouse=True)
def _terminal_env_of_the_run(request: pytest.FixtureRequest) -> None:
    """In an xdist worker, COLUMNS and LINES as the controller had them (unset if unset)."""
    workerinput = getattr(request.config, "workerinput", None)
    if workerinput is None:
        return
    for key, value in workerinput.get("regnotify_terminal_env", {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EmbeddedPostgres]:
    """A private cluster for the whole run (of this process), with the migrations applied."""
    root = Path(tempfile.mkdtemp(prefix=f"regnotify-pg-{worker_name()}-"))
    cluster = EmbeddedPostgres(
        data_dir=root / "data",
        port=free_port(),
        database=TEST_DATABASE,
        # Durability is not what these tests are about; speed is welcome.
        settings={"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"},
    )
    cluster.chown(root)
    try:
        cluster.start()
        migrate(cluster.url)
        with connect(cluster.url) as conn:
            conn.execute(QUIET_HOURS_OFF)
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(pg_cluster: EmbeddedPostgres) -> str:
    """URL of the migrated test database (superuser)."""
    return pg_cluster.url


# ── The same schema on a Supabase-like and on a plain-owner database ─────────

SUPABASE_DATABASE = "regnotify_supabase"
SUPABASE_OWNER = "supabase_owner"
PLAIN_DATABASE = "regnotify_plain"
PLAIN_OWNER = "plain_owner"


def database_url_for(pg_cluster: EmbeddedPostgres, database: str, user: str = "postgres") -> str:
    """A URL for `user` (trust auth on loopback) to `database` on the test cluster."""
    return f"postgresql://{user}@127.0.0.1:{pg_cluster.port}/{database}"


def _api_roles(conn: psycopg.Connection) -> None:
    # As Supabase's initial schema creates them (roles are cluster-wide: the
    # vanilla database's migration 01 may have made them already, the same way).
    for role, extra in (("anon", ""), ("authenticated", ""), ("service_role", " BYPASSRLS")):
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            conn.execute(f"CREATE ROLE {role} NOLOGIN NOINHERIT{extra}")


def fresh_owned_database(pg_cluster: EmbeddedPostgres, name: str, owner: str,
                         attrs: str) -> str:
    """Database `name`, new and owned by `owner` (created with `attrs`); its superuser URL."""
    with connect(pg_cluster.admin_url) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone():
            c.execute(f"CREATE ROLE {owner} LOGIN NOSUPERUSER {attrs}")
        c.execute(f'CREATE DATABASE "{name}" OWNER {owner}')
    return database_url_for(pg_cluster, name)


@pytest.fixture(scope="session")
def supabase_database_url(pg_cluster: EmbeddedPostgres) -> str:
    """A database set up the way a Supabase project is, migrated by its non-superuser owner.

    Supabase's `postgres` (here `supabase_owner`): CREATEROLE, CREATEDB,
    BYPASSRLS, member of pg_monitor and of the API roles; ALL on new tables,
    functions and sequences in public granted by default to anon,
    authenticated and service_role; an `extensions` schema; schema auth and
    auth.jwt() owned by someone else. Returns the superuser URL (tests switch
    roles with SET ROLE, as PostgREST does).
    """
    owner = SUPABASE_OWNER
    fresh_owned_database(pg_cluster, SUPABASE_DATABASE, owner,
                          "CREATEROLE CREATEDB BYPASSRLS")
    url = database_url_for(pg_cluster, SUPABASE_DATABASE)
    with connect(url) as c:
        _api_roles(c)
        c.execute(f"GRANT pg_monitor, anon, authenticated, service_role TO {owner}")
        c.execute(f"ALTER ROLE {owner} SET search_path TO \"$user\", public, extensions")
        c.execute(f"CREATE SCHEMA extensions AUTHORIZATION {owner}")
        c.execute("GRANT USAGE ON SCHEMA extensions TO anon, authenticated, service_role")
        c.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA extensions")
        # Supabase's auth schema belongs to supabase_auth_admin, not the owner.
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
    migrate(database_url_for(pg_cluster, SUPABASE_DATABASE, owner))
    # As on the vanilla database: otherwise the first test to use this one in
    # a process (which one depends on the order, and so on xdist) sees quiet
    # hours on at night, and every later one sees them off (clean_db's reset).
    with connect(url) as c:
        c.execute(QUIET_HOURS_OFF)
    return url


@pytest.fixture(scope="session")
def plain_database_url(pg_cluster: EmbeddedPostgres) -> str:
    """A database migrated by a plain owner: no superuser, no CREATEROLE, no pg_monitor.

    The API roles already exist in the cluster (the vanilla database's 01 made
    them); a plain owner could not create them (see the README). Returns the
    superuser URL.
    """
    fresh_owned_database(pg_cluster, PLAIN_DATABASE, PLAIN_OWNER, "")
    with connect(pg_cluster.admin_url) as c:
        _api_roles(c)
    migrate(database_url_for(pg_cluster, PLAIN_DATABASE, PLAIN_OWNER))
    url = database_url_for(pg_cluster, PLAIN_DATABASE)
    with connect(url) as c:
        c.execute(QUIET_HOURS_OFF)  # as on the others (see supabase_database_url)
    return url


# ── Migrated databases by copy ───────────────────────────────────────────────

MIGRATED_TEMPLATE = "regnotify_migrated_template"


@pytest.fixture(scope="session")
def migrated_template(pg_cluster: EmbeddedPostgres) -> str:
    """The name of a database migrated once by the superuser and never used after.

    Not the test database itself: pg_cron's launcher stays connected to that
    one, and PostgreSQL copies only a database nobody is connected to. Like any
    database of the cluster but the test database, it has no pg_cron.
    """
    pg_cluster.create_database(MIGRATED_TEMPLATE)
    migrate(database_url_for(pg_cluster, MIGRATED_TEMPLATE))
    return MIGRATED_TEMPLATE


def clone_database(pg_cluster: EmbeddedPostgres, template: str, name: str) -> str:
    """Database `name`, new, a file copy of `template` (CREATE DATABASE ... TEMPLATE); its URL.

    A copy takes a fraction of a second where running the migrations again
    takes several times as long, and it is the same schema, grants and rows.
    """
    with connect(pg_cluster.admin_url) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        # A session that just closed on the template may still be exiting;
        # PostgreSQL refuses the copy until it has.
        deadline = time.monotonic() + 10
        while True:
            try:
                c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                break
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    return database_url_for(pg_cluster, name)


@pytest.fixture()
def migrated_database(pg_cluster: EmbeddedPostgres,
                      migrated_template: str) -> Callable[[str], str]:
    """`migrated_database(name)`: a new database `name` with every migration applied; its URL.

    What `CREATE DATABASE` followed by `migrate()` gives (no pg_cron, the
    default notification_config), copied from `migrated_template`. Tests of
    the migrations themselves still run them.
    """
    return lambda name: clone_database(pg_cluster, migrated_template, name)


@pytest.fixture(params=["vanilla", "supabase"])
def each_database_url(request: pytest.FixtureRequest) -> str:
    """The vanilla (superuser-migrated) and the Supabase-like database, in turn.

    A test module runs on both by defining `database_url` as this fixture.
    """
    if request.param == "vanilla":
        return request.getfixturevalue("pg_cluster").url
    return request.getfixturevalue("supabase_database_url")


@pytest.fixture()
def clean_db(database_url: str) -> Iterator[str]:
    """The test database, emptied of rows after the test."""
    yield database_url
    with connect(database_url) as conn:
        conn.execute(f"TRUNCATE {', '.join(_TABLES)} RESTART IDENTITY CASCADE")
        conn.execute(
            "UPDATE notification_config SET debounce_window = interval '5 minutes', "
            "max_wait = interval '30 minutes', relay_url = NULL, relay_token = NULL, "
            "default_language = 'en', "
            "staff_email = NULL, help_reply = NULL, dealership_phone = NULL, "
            "reply_ack_every = interval '1 day', opt_out_keywords = DEFAULT, "
            "opt_in_keywords = DEFAULT, help_keywords = DEFAULT"
        )
        conn.execute(QUIET_HOURS_OFF)


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


# ── Delivery: Redis, wire-level providers, the Celery app ────────────────────

TWILIO_FROM = "+15005550006"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """A private Redis for the run (never the machine's own on 6379)."""
    server = EmbeddedRedis(port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def twilio_wire_server() -> Iterator[TwilioWire]:
    """Twilio's Messages API, spoken by a local server."""
    with TwilioWire() as wire:
        yield wire


@pytest.fixture(scope="session")
def resend_wire_server() -> Iterator[ResendWire]:
    """Resend's e-mail API, spoken by a local server."""
    with ResendWire() as wire:
        yield wire


@pytest.fixture()
def twilio_wire(twilio_wire_server: TwilioWire) -> Iterator[TwilioWire]:
    """The Twilio wire with an empty ledger and no faults."""
    twilio_wire_server.reset(config=True)
    yield twilio_wire_server
    twilio_wire_server.reset(config=True)


@pytest.fixture()
def resend_wire(resend_wire_server: ResendWire) -> Iterator[ResendWire]:
    """The Resend wire with an empty ledger and no faults."""
    resend_wire_server.reset(config=True)
    yield resend_wire_server
    resend_wire_server.reset(config=True)


def provider_env(
    database_url: str, broker_url: str, twilio: TwilioWire, resend_: ResendWire
) -> dict[str, str]:
    """The environment that points regnotify at the test database, Redis and wires."""
    return {
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "SMS_PROVIDER": "twilio",
        "EMAIL_PROVIDER": "resend",
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_FROM_NUMBER": TWILIO_FROM,
        "TWILIO_API_BASE_URL": twilio.url,
        "RESEND_API_KEY": resend_.api_key,
        "RESEND_API_BASE_URL": resend_.url,
        "EMAIL_FROM": "Lone Star Auto <registrations@lonestar.test>",
        "DEALERSHIP_NAME": "Lone Star Auto",
        "SEND_MAX_RETRIES": "3",
        "SEND_RETRY_BACKOFF_BASE": "0.05",
        "PROVIDER_TIMEOUT_S": "1",
        "TWILIO_RATE_PER_S": "1000",
        "RESEND_RATE_PER_S": "1000",
    }


def reset_process_state() -> None:
    """Make the tasks re-read the environment: settings, engine, providers, limiters."""
    from tasks.broker import wakeup
    from tasks.coordination import worker_metrics
    from tasks.database import reset_engine
    from tasks.providers.registry import reset_providers
    from tasks.sending import delivery_flow
    from tasks.settings import get_settings

    get_settings.cache_clear()
    reset_engine()
    reset_providers()
    delivery_flow._limiter.cache_clear()
    wakeup.reset_client()
    worker_metrics.reset_client()


@pytest.fixture()
def pipeline(
    clean_db: str,
    redis_server: EmbeddedRedis,
    twilio_wire: TwilioWire,
    resend_wire: ResendWire,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    """Eager Celery (tasks run in this process) against the test database and the wires."""
    from tasks.broker.app import app

    state = ResendSdkState.capture()
    env = provider_env(clean_db, redis_server.url, twilio_wire, resend_wire)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_process_state()
    saved = {k: app.conf.get(k) for k in ("task_always_eager", "task_eager_propagates")}
    app.conf.task_always_eager = True
    # Retries run inline only when eager errors are not propagated (Celery
    # raises Retry otherwise); tests assert the database's end state instead.
    app.conf.task_eager_propagates = False
    try:
        yield env
    finally:
        app.conf.update(saved)
        monkeypatch.undo()
        reset_process_state()
        state.restore()


@pytest.fixture()
def state_root() -> Iterator[Path]:
    """A folder for `up` to run in.

    Not under pytest's tmp (mode 700): the postgres user must reach the data.
    """
    root = Path(tempfile.mkdtemp(prefix="regnotify-up-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def broker_app(redis_server: EmbeddedRedis) -> Iterator[Celery]:
    """A client of the test broker, to enqueue and inspect (not the module-level app)."""
    from tasks.broker.app import create_app

    app = create_app()
    app.conf.broker_url = redis_server.url
    # Each test starts from empty queues.
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()
    yield app
    app.close()


# ── Order and selection: scripts/test (parallel) and scripts/test --fast ──────

#: Modules or single tests (besides those marked e2e, reliability or slow) that start
#: processes — a worker, `up`, a relay, a browser, a benchmark, the CLI — or
#: wait on real time. They get the `process` marker; `scripts/test --fast`
#: leaves them out. Chosen by their --durations.
PROCESS_MODULES = frozenset({
    "tests/test_bench_isolation.py",
    "tests/test_bench_smoke.py",
    "tests/test_bench_trigger_peer.py",
    "tests/test_bench_trigger_profile.py",
    "tests/test_burst_wakeup.py",
    "tests/test_cli_errors.py",
    "tests/test_compose_and_procfile.py",
    "tests/test_first_day.py",
    "tests/test_provider_choice.py",
    "tests/test_readme_facts.py",
    "tests/test_relay_process.py",
    "tests/test_relay_slow_clients.py",
    "tests/test_up_wheel_binaries.py",
    "tests/test_wakeup.py",
    "tests/test_worker_restart.py",
    "tests/wire_selftest/test_control_and_cli.py",
    "tests/test_retention.py::test_a_million_old_rows_go_while_stage_updates_flow",
    "tests/test_prune_index.py::test_a_prune_with_nothing_due_touches_a_bounded_number_of_rows",
    "tests/test_quiet_hours.py::test_a_morning_backlog_is_released_in_batches_and_sent_once",
    "tests/test_import_layers.py",
    # Marked e2e as a whole; named here so that --fast does not even import them.
    "tests/test_flower_browser.py",
    "tests/test_portal_browser.py",
    "tests/test_quiet_hours_worker.py",
    "tests/test_replies_worker.py",
    "tests/test_up.py",
    "tests/test_up_lock.py",
    "tests/test_up_portal.py",
    "tests/test_up_stop.py",
    "tests/test_worker_e2e.py",
    "tests/reliability",
})

#: The modules (or single tests) that take longest, longest first (measured). They run first,
#: so that under pytest-xdist no process is left finishing a long one alone at
#: the end while the others are idle. Every other module keeps its place after them.
LONGEST_FIRST = (
    # Single tests of 20 s or more on a loaded 2-core machine (--durations).
    "tests/test_send_path_model.py::test_the_send_path_model",
    "tests/cluster/test_backlog.py",
    "tests/cluster/test_broker_and_database.py",
    "tests/cluster/test_worker_hosts.py",
    "tests/test_bench_trigger_profile.py::"
    "test_profile_of_a_real_backend_prices_the_pin_and_counts_the_queue_index_entries",
    "tests/test_bench_trigger_profile.py::"
    "test_python_m_bench_trigger_profile_prints_a_table_per_mode_and_ends_with_json",
    "tests/test_bench_smoke.py::test_bench_smoke_prints_every_figure_as_the_last_line",
    "tests/test_retention.py::test_a_million_old_rows_go_while_stage_updates_flow",
    "tests/reliability/test_lease_and_consent.py::"
    "test_slow_rate_many_threads_no_delivery_attempted_twice",
    "tests/test_prune_index.py::test_a_prune_with_nothing_due_touches_a_bounded_number_of_rows",
    "tests/test_up.py::test_up_runs_everything_and_stops_cleanly",
    "tests/test_up_stop.py",
    "tests/test_flower_browser.py",
    "tests/test_portal_browser.py",
    "tests/test_quiet_hours.py::test_a_morning_backlog_is_released_in_batches_and_sent_once",
    "tests/test_up_portal.py",
    "tests/test_up_lock.py",
    "tests/test_bench_trigger_peer.py::"
    "test_python_m_bench_trigger_runs_every_variant_and_ends_with_the_ratios",
    "tests/test_bench_smoke.py",
    "tests/reliability/test_backlog_rate_limits.py",
    "tests/reliability/test_provider_chaos.py",
    "tests/reliability/test_crashes.py",
    "tests/reliability/test_lease_and_consent.py",
    "tests/reliability/test_relay_fuzz.py",
    "tests/test_up_wheel_binaries.py",
    "tests/test_burst_wakeup.py",
    "tests/test_compose_and_procfile.py::test_compose_commands_resolve",
    # Whole modules, by their total: many short tests that each start a process.
    "tests/test_first_day.py",
    "tests/test_cli_errors.py",
    "tests/reliability/test_storm.py",
    "tests/reliability/test_secrets_in_logs.py",
    "tests/test_quiet_hours_worker.py",
    "tests/test_worker_e2e.py",
    "tests/test_replies_worker.py",
    "tests/test_worker_restart.py",
    "tests/test_relay_slow_clients.py",
    "tests/test_relay_process.py",
    "tests/test_wakeup.py",
    "tests/test_compose_and_procfile.py",
    "tests/test_bench_trigger_profile.py",
    "tests/test_bench_trigger_peer.py",
    "tests/test_import_layers.py",
    "tests/test_provider_choice.py",
    "tests/wire_selftest/test_control_and_cli.py",
)

#: Fixtures that start a process or a real clock wait, wherever they are used.
PROCESS_FIXTURES = frozenset({"stack", "state_root", "broker_app"})


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _function(item: pytest.Item) -> str:
    """The node id without parameters: one name for every case of a parametrized test."""
    return item.nodeid.split("[", 1)[0]


#: The mark expression `scripts/test --fast` passes.
FAST = "not process"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under --fast, not even import what is all `process` (the benchmarks' imports alone
    take seconds in each xdist worker)."""
    if config.getoption("markexpr", "") != FAST:
        return None
    try:
        name = collection_path.relative_to(config.rootpath).as_posix()
    except ValueError:
        return None
    return True if name in PROCESS_MODULES else None


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if (_module(item) in PROCESS_MODULES or _function(item) in PROCESS_MODULES
                or PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ()))
                or any(item.get_closest_marker(m) for m in ("e2e", "reliability", "slow"))):
            item.add_marker(pytest.mark.process)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    # A stable sort: within a module, and among the unranked, the order stays.
    items.sort(key=lambda item: rank.get(_function(item), rank.get(_module(item), len(rank))))
