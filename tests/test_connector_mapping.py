"""db.connector: each kind of driver error becomes one member of the family, said in one
line without secrets. Every driver error here is a real one, raised by the driver
against a real server (or a port where none listens)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import psycopg
import pytest
import redis
import sqlalchemy
from kombu import Connection as KombuConnection
from psycopg_pool import ConnectionPool
from sqlalchemy import create_engine, text
from sqlalchemy.pool import QueuePool

from db.connection import sqlalchemy_url
from db.connector import BRIEFLY_AWAY, family_error, family_errors
from db.errors import (
    BrokerUnavailable,
    CallerNotAllowed,
    DatabaseError,
    DatabaseNotMigrated,
    DatabaseUnavailable,
    RegistrationNotFound,
    RegnotifyError,
    StoreUnavailable,
    ValueRefused,
)

SECRET = "s3cr3t-pw"
#: Where nothing listens (port 1 is never bound in the test environment).
NOWHERE_PG = f"postgresql://app:{SECRET}@127.0.0.1:1/none"


def _raised(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except Exception as exc:
        return exc
    raise AssertionError("the driver raised nothing")


def _one_line_without_secrets(member: RegnotifyError) -> None:
    text_ = str(member)
    assert text_ and "\n" not in text_, text_
    assert SECRET not in text_, text_
    assert SECRET not in getattr(member, "detail", ""), member.detail
    assert member.exit_code == 2


def _sql(database_url: str, statement: str) -> BaseException:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return _raised(lambda: conn.execute(statement))


def _raise_sqlstate(state: str) -> str:
    return (f"DO $$ BEGIN RAISE EXCEPTION 'refused on purpose' USING ERRCODE = '{state}'; "
            "END $$")


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[sqlalchemy.Engine]:
    made = create_engine(sqlalchemy_url(database_url), poolclass=QueuePool, pool_size=1,
                         max_overflow=0, pool_timeout=0.2)
    yield made
    made.dispose()


def _sa(engine: sqlalchemy.Engine, statement: str) -> BaseException:
    def run() -> None:
        with engine.connect() as conn:
            conn.execute(text(statement))
    return _raised(run)


# ── The database ─────────────────────────────────────────────────────────────

def test_an_unreachable_server_is_database_unavailable_without_the_password():
    error = _raised(lambda: psycopg.connect(NOWHERE_PG, connect_timeout=2))
    member = family_error(error)
    assert type(member) is DatabaseUnavailable
    assert "cannot reach the database" in str(member)
    _one_line_without_secrets(member)
    named = family_error(error, database_url=NOWHERE_PG)
    assert "postgresql://app:***@127.0.0.1:1/none" in str(named)
    _one_line_without_secrets(named)


def test_the_same_through_sqlalchemy():
    nowhere = create_engine(sqlalchemy_url(NOWHERE_PG), connect_args={"connect_timeout": 2})
    try:
        error = _raised(nowhere.connect)
    finally:
        nowhere.dispose()
    assert isinstance(error, sqlalchemy.exc.OperationalError)
    member = family_error(error)
    assert type(member) is DatabaseUnavailable
    _one_line_without_secrets(member)


@pytest.mark.parametrize("via", ["psycopg", "sqlalchemy"])
def test_a_missing_table_is_database_not_migrated(via, database_url, engine):
    statement = "SELECT * FROM no_such_table_here"
    error = _sql(database_url, statement) if via == "psycopg" else _sa(engine, statement)
    member = family_error(error)
    assert type(member) is DatabaseNotMigrated
    assert "run `regnotify migrate`" in str(member)


@pytest.mark.parametrize(("state", "member_type"), [
    ("42501", CallerNotAllowed),
    ("P0002", RegistrationNotFound),
    ("23505", ValueRefused),
    ("23514", ValueRefused),
    ("42601", DatabaseError),
])
@pytest.mark.parametrize("via", ["psycopg", "sqlalchemy"])
def test_the_servers_sqlstate_picks_the_member(state, member_type, via, database_url, engine):
    statement = _raise_sqlstate(state)
    error = _sql(database_url, statement) if via == "psycopg" else _sa(engine, statement)
    member = family_error(error)
    assert type(member) is member_type
    assert isinstance(member, DatabaseError) and member.sqlstate == state
    assert "refused on purpose" in member.detail
    _one_line_without_secrets(member)


def test_a_real_privilege_refusal_is_caller_not_allowed(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET ROLE anon")
        try:
            error = _raised(lambda: conn.execute("SELECT * FROM pg_authid"))
        finally:
            conn.execute("RESET ROLE")
    assert type(family_error(error)) is CallerNotAllowed


def test_a_full_sqlalchemy_pool_is_database_unavailable(engine):
    with engine.connect():
        error = _raised(engine.connect)  # the one connection is taken: times out
    assert isinstance(error, sqlalchemy.exc.TimeoutError)
    member = family_error(error)
    assert type(member) is DatabaseUnavailable and "no database connection free" in str(member)


def test_a_full_psycopg_pool_is_database_unavailable(database_url):
    with (ConnectionPool(database_url, min_size=1, max_size=1, timeout=0.2) as pool,
          pool.connection()):
        error = _raised(lambda: pool.getconn())
    member = family_error(error)
    assert type(member) is DatabaseUnavailable and "no database connection free" in str(member)


@pytest.mark.parametrize("url", ["bogus", f"nosuchdb://app:{SECRET}@127.0.0.1:3306/app"])
def test_a_url_sqlalchemy_cannot_use(url):
    error = _raised(lambda: create_engine(url))
    member = family_error(error)
    assert type(member) is DatabaseUnavailable
    assert "set it to postgresql://" in str(member)
    _one_line_without_secrets(member)


# ── The store, the broker, the socket layer ─────────────────────────────────

def test_redis_away_is_store_unavailable_without_the_password():
    client = redis.Redis.from_url(f"redis://:{SECRET}@127.0.0.1:1/0",
                                  socket_connect_timeout=1)
    error = _raised(client.ping)
    assert isinstance(error, redis.ConnectionError)
    member = family_error(error)
    assert type(member) is StoreUnavailable
    _one_line_without_secrets(member)


def test_a_redis_error_answer_is_store_unavailable(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    error = _raised(lambda: client.execute_command("NO-SUCH-COMMAND"))
    assert isinstance(error, redis.ResponseError)
    assert type(family_error(error)) is StoreUnavailable


@pytest.mark.parametrize("url", [f"amqp://guest:{SECRET}@127.0.0.1:1//",
                                 f"redis://:{SECRET}@127.0.0.1:1/0"])
def test_a_broker_away_is_broker_unavailable_without_the_password(url):
    with KombuConnection(url, connect_timeout=1) as broker:
        error = _raised(lambda: broker.ensure_connection(max_retries=1, interval_start=0,
                                                         interval_step=0, timeout=2))
    member = family_error(error)
    assert type(member) is BrokerUnavailable
    assert "cannot reach the broker" in str(member)
    _one_line_without_secrets(member)


def test_a_socket_error_is_the_member_the_edge_names():
    error = _raised(lambda: socket.create_connection(("127.0.0.1", 1), timeout=1))
    assert isinstance(error, ConnectionError)
    assert family_error(error) is None  # whose socket? only the edge knows
    assert type(family_error(error, network=BrokerUnavailable)) is BrokerUnavailable
    assert type(family_error(error, network=StoreUnavailable)) is StoreUnavailable


# ── The context manager ──────────────────────────────────────────────────────

def test_family_errors_raises_the_member_chained_to_the_driver_error(database_url):
    with (pytest.raises(CallerNotAllowed) as raised, family_errors(),
          psycopg.connect(database_url, autocommit=True) as conn):
        conn.execute(_raise_sqlstate("42501"))
    assert isinstance(raised.value.__cause__, psycopg.errors.InsufficientPrivilege)


def test_family_errors_leaves_everything_else_alone():
    with pytest.raises(ZeroDivisionError), family_errors():
        _ = 1 / 0
    already = DatabaseUnavailable("no database")
    with pytest.raises(DatabaseUnavailable) as raised, family_errors():
        raise already
    assert raised.value is already


def test_family_errors_decorates_a_function():
    @family_errors(network=StoreUnavailable)
    def ping() -> None:
        redis.Redis(port=1, socket_connect_timeout=1).ping()

    with pytest.raises(StoreUnavailable):
        ping()


def _instance(cls: type[BaseException]) -> BaseException:
    if issubclass(cls, sqlalchemy.exc.DBAPIError):
        return cls("SELECT 1", {}, psycopg.OperationalError("server closed the connection"))
    return cls("server closed the connection")


@pytest.mark.parametrize("cls", BRIEFLY_AWAY, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_briefly_away_error_maps_to_an_unavailable_member(cls):
    # The tasks' retry list and the edges' answers cannot disagree: what a
    # task retries, an edge calls unavailable.
    member = family_error(_instance(cls))
    assert isinstance(member, DatabaseUnavailable | StoreUnavailable | BrokerUnavailable), member
