"""The send path's cheaper plumbing keeps the guarantees of what it replaced.

db/direct.py runs the send statements on the pooled psycopg connection: they
must commit and roll back with the SQLAlchemy transaction around them.
tasks/broker/broker_transport.py keeps one Redis client per kombu channel: messages
must still go out and be consumed, and a channel whose pool was replaced must
not keep a client on the old one.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from db import deliveries, direct
from db.connection import sqlalchemy_url
from tests.flow import change_stage, make_due
from tests.pg import new_registration


@pytest.fixture()
def sa_engine(clean_db):
    engine = create_engine(sqlalchemy_url(clean_db))
    yield engine
    engine.dispose()


def _queued_delivery(conn, sa_engine) -> int:
    from db.queue import claim_due

    reg = new_registration(conn, customer_phone="+15551237001", notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    with sa_engine.begin() as c:
        [ref] = claim_due(c, 10).deliveries
    return ref.id


def _claim(c, delivery_id: int) -> deliveries.Claim | None:
    return deliveries.claim(c, delivery_id, lease_s=30, recipient="+15551237001",
                            provider="twilio", body="b", subject=None, template_used="t",
                            language="en")


def test_direct_statements_roll_back_with_the_transaction(conn, sa_engine):
    delivery_id = _queued_delivery(conn, sa_engine)
    with pytest.raises(RuntimeError), sa_engine.begin() as c:
        assert _claim(c, delivery_id) is not None
        raise RuntimeError("the task died before its commit")
    row = conn.execute("SELECT status, attempts FROM registration_notifications WHERE id = %s",
                       (delivery_id,)).fetchone()
    assert (row["status"], row["attempts"]) == ("queued", 0)


def test_direct_statements_commit_with_a_connection_that_had_no_transaction(conn, sa_engine):
    delivery_id = _queued_delivery(conn, sa_engine)
    with sa_engine.connect() as c:
        claim = _claim(c, delivery_id)
        # A second claim in the same transaction finds the lease taken.
        assert claim is not None and claim.attempts == 1 and _claim(c, delivery_id) is None
        deliveries.mark_sent(c, delivery_id, "SM123")
        c.commit()
    row = conn.execute("SELECT status, provider_message_id FROM registration_notifications"
                       " WHERE id = %s", (delivery_id,)).fetchone()
    assert (row["status"], row["provider_message_id"]) == ("sent", "SM123")
    with sa_engine.connect() as c:
        [d] = deliveries.load_many(c, [delivery_id])
        assert isinstance(d.registration_id, str) and d.status == "sent"
        assert direct.fetch(c, "load_deliveries", {"ids": [-1]}) == []


def test_a_lost_connection_is_invalidated_not_pooled_again(conn, sa_engine):
    import psycopg

    with sa_engine.connect() as c:
        pid = c.connection.driver_connection.info.backend_pid
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError):
            deliveries.load_many(c, [1])
        assert c.invalidated
    with sa_engine.connect() as c:
        assert c.connection.driver_connection.info.backend_pid != pid
        assert deliveries.load_many(c, [-1]) == []


def test_the_broker_channel_reuses_its_client_and_still_carries_messages(broker_app):
    from tasks.broker.broker_transport import Channel

    with broker_app.connection_for_write() as connection:
        channel = connection.default_channel
        assert isinstance(channel, Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        producer = connection.Producer(channel)
        for n in range(3):
            producer.publish({"n": n}, routing_key="plumbing-test", serializer="json",
                             declare=[connection.SimpleQueue("plumbing-test").queue])
        queue = connection.SimpleQueue("plumbing-test")
        assert sorted(queue.get(timeout=5).payload["n"] for _ in range(3)) == [0, 1, 2]
        queue.close()
        # A channel whose pools were dropped (a reconnect) builds a client on the new pool.
        channel._disconnect_pools()
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool
            assert third.ping()


def test_other_brokers_keep_their_own_transport():
    from kombu import Connection

    from tasks.broker.broker_transport import Transport, use

    use()
    assert isinstance(Connection("redis://127.0.0.1:1/0").transport, Transport)
    assert isinstance(Connection("rediss://127.0.0.1:1/0").transport, Transport)
    assert not isinstance(Connection("amqp://guest@127.0.0.1:1//").transport, Transport)


@pytest.fixture()
def task_db(clean_db, monkeypatch):
    """The tasks' own engine (tasks.database) on the test database."""
    from tests.conftest import reset_process_state

    monkeypatch.setenv("DATABASE_URL", clean_db)
    reset_process_state()
    yield clean_db
    monkeypatch.undo()
    reset_process_state()


def test_a_send_keeps_one_connection_and_replaces_it_when_lost_while_idle(
        conn, task_db, monkeypatch):
    from tasks.sending import delivery_flow

    with delivery_flow._HeldConnection() as held:
        first = held.get()
        pid = first.connection.driver_connection.info.backend_pid
        # Between statements a send keeps its checkout.
        assert held.get() is first
        # The server drops it while the send waits (a restart, a slot, a slow provider).
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        monkeypatch.setattr(delivery_flow, "PING_AFTER_IDLE_S", 0.0)
        again = held.get()
        # The ping found it gone: the next statement runs on a live connection.
        assert again.connection.driver_connection.info.backend_pid != pid
        assert deliveries.load_many(again, [-1]) == []


def test_a_single_load_settles_on_one_plan_per_connection(conn, sa_engine):
    # A send loads one delivery. PostgreSQL plans a prepared statement afresh
    # on each run until a generic plan looks as cheap as a custom one; the
    # batch form (`= ANY` of an array) never does, and planning its six-way
    # join on every send cost five times its execution. The single-id form
    # must reach its generic plan, and still load what the batch form loads.
    delivery_id = _queued_delivery(conn, sa_engine)
    with sa_engine.connect() as c:
        # psycopg prepares a statement on its sixth run; PostgreSQL then
        # tries five custom plans before it may settle.
        for _ in range(20):
            one = deliveries.load(c, delivery_id)
        many = deliveries.load_many(c, [delivery_id])
        plans = c.exec_driver_sql(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        ).all()
    assert one is not None and [one] == many
    [(_, generic, custom)] = [p for p in plans if "WHERE n.id = $1" in p[0]]
    assert (generic, custom) == (10, 5), plans
