"""The connector at the edges that used to read driver errors themselves: the front
door, the install preflight, the worker's batched publish and the coordination
engines now say them through db.connector, once. Real servers throughout."""

from __future__ import annotations

import ast
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
import sqlalchemy
from kombu import Connection as KombuConnection
from kombu import Producer
from kombu.exceptions import BatchPublishError

import db.errors
from db import front_door
from db.connection import sqlalchemy_url
from db.connector import family_error, family_errors
from db.errors import (
    BrokerUnavailable,
    CallerNotAllowed,
    DatabaseUnavailable,
    PublishUncertain,
    RegistrationNotFound,
    RegnotifyError,
    StoreUnavailable,
    ValueRefused,
)

ROOT = Path(__file__).resolve().parent.parent
CONNECTOR = "db/connector.py"
#: The SQLSTATEs that pick a member of the family: read by the connector alone.
MEMBER_SQLSTATES = {"42501", "P0002"}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for package in ("tasks", "db"):
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text())


# ── One place ────────────────────────────────────────────────────────────────

def test_only_the_connector_reads_the_sqlstates_that_pick_a_member():
    readers = sorted(
        f"{name}:{node.lineno} ({node.value})"
        for name, tree in _modules() if name != CONNECTOR
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in MEMBER_SQLSTATES)
    assert not readers, f"catch CallerNotAllowed / RegistrationNotFound instead: {readers}"


def test_each_member_of_the_family_is_one_class():
    # Two classes of one name (an engine's own StoreUnavailable) would let an
    # `except` catch one and miss the other.
    family = {name for name, value in vars(db.errors).items()
              if isinstance(value, type) and issubclass(value, RegnotifyError)}
    defined: dict[str, list[str]] = {}
    for name, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name in family:
                defined.setdefault(node.name, []).append(name)
    twice = {cls: where for cls, where in defined.items() if where != ["db/errors.py"]}
    assert not twice, f"defined outside db/errors.py (re-export it instead): {twice}"


def test_the_coordination_store_raises_the_familys_store_unavailable():
    import tasks.coordination.store
    import tasks.exceptions

    assert tasks.coordination.store.StoreUnavailable is db.errors.StoreUnavailable
    assert tasks.exceptions.StoreUnavailable is db.errors.StoreUnavailable


# ── The front door ───────────────────────────────────────────────────────────

@pytest.fixture()
def engine(clean_db: str) -> Iterator[sqlalchemy.Engine]:
    eng = sqlalchemy.create_engine(sqlalchemy_url(clean_db))
    try:
        yield eng
    finally:
        eng.dispose()


def test_the_front_doors_refusals_are_the_connectors_members(engine):
    nobody = str(uuid.uuid4())
    with pytest.raises(RegistrationNotFound) as raised, engine.begin() as conn:
        front_door.act_as_backend(conn)
        front_door.request_notification(conn, nobody)
    assert raised.value.sqlstate == "P0002"
    assert isinstance(raised.value.__cause__, sqlalchemy.exc.DBAPIError)
    with pytest.raises(CallerNotAllowed) as refused, engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL ROLE anon")
        front_door.request_notification(conn, nobody)
    assert refused.value.sqlstate == "42501"
    assert "\n" not in str(refused.value)


# ── A refused value names its constraint (the install preflight reads it) ──

def test_a_check_violation_names_its_constraint(clean_db):
    with psycopg.connect(clean_db, autocommit=True) as conn, \
            pytest.raises(ValueRefused) as raised, family_errors():
        conn.execute("CREATE TEMP TABLE t (v text CONSTRAINT v_is_small CHECK (v IN ('a')))")
        conn.execute("INSERT INTO t VALUES ('b')")
    assert raised.value.sqlstate == "23514"
    assert raised.value.constraint == "v_is_small"


# ── The worker's batched publish ─────────────────────────────────────────────

@pytest.fixture()
def full_redis(redis_server) -> Iterator[str]:
    """The test Redis refusing every write (used memory over maxmemory), for one test."""
    admin = redis.Redis.from_url(redis_server.url)
    before = admin.config_get("maxmemory")["maxmemory"]
    policy = admin.config_get("maxmemory-policy")["maxmemory-policy"]
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")
    try:
        yield redis_server.url
    finally:
        admin.config_set("maxmemory", before)
        admin.config_set("maxmemory-policy", policy)
        admin.close()


def test_a_batch_that_fails_midway_is_publish_uncertain(full_redis):
    with KombuConnection(full_redis) as broker:
        producer = Producer(broker.default_channel)
        with pytest.raises(PublishUncertain) as raised, family_errors(), \
                producer.batch(max_size=10):
            producer.publish({"n": 1}, routing_key="regnotify-test-batch")
    assert isinstance(raised.value.__cause__, BatchPublishError)
    assert isinstance(raised.value, BrokerUnavailable)  # the broker's, for any edge
    assert "\n" not in str(raised.value)


def test_only_maps_just_the_members_asked_for():
    # Inside a task: the flush's failure is handled, a Redis away stays the
    # driver's, which the task's retry knows.
    away = redis.Redis(port=1, socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError), family_errors(only=(PublishUncertain,)):
        away.ping()
    with pytest.raises(StoreUnavailable), family_errors(only=(StoreUnavailable,)):
        away.ping()
    assert type(family_error(BatchPublishError("flush failed"))) is PublishUncertain


# ── The coordination engines ─────────────────────────────────────────────────

def test_an_unreachable_engine_says_store_unavailable_chained_to_the_member():
    from tasks.coordination.store import Spacing
    from tasks.coordination.store_postgres import PostgresStore
    from tasks.coordination.store_redis import RedisStore
    from tasks.local.ports import free_port

    port = free_port()
    dead_pg = sqlalchemy.create_engine(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none",
                                       connect_args={"connect_timeout": 1})
    store = PostgresStore(lambda: dead_pg)
    with pytest.raises(StoreUnavailable) as raised:
        store.slot_reserve("k", Spacing(1.0), 1.0)
    assert isinstance(raised.value.__cause__, DatabaseUnavailable)
    assert "\n" not in str(raised.value)
    dead_redis = RedisStore(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
    with pytest.raises(StoreUnavailable) as raised:
        dead_redis.marker_set("k", 1.0)
    assert isinstance(raised.value.__cause__, redis.ConnectionError)
