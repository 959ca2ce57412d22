"""One outcome after a provider error, whatever the path: a lone send, an e-mail batch, a digest.

Eager Celery, the real resend SDK against the Resend wire, Twilio's wire for
the fallback texts, the test database.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.flow import change_stage, make_due, run_tick
from tests.pg import new_registration

pytestmark = pytest.mark.usefixtures("pipeline")
pytest_plugins = ["tests.relay_helpers"]

STAFF = "desk@lonestar.test"


def _due_emails(conn, addresses: list[str], first_phone: int) -> dict[str, int]:
    """E-mail customers (with a phone for a fallback), due now; {address: delivery id}."""
    for i, address in enumerate(addresses):
        reg = new_registration(conn, customer_email=address, notification_pref="email",
                               customer_phone=f"+1555444{first_phone + i:04d}")
        change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    run_tick()
    rows = conn.execute("SELECT id, recipient FROM registration_notifications "
                        "WHERE channel = 'email' AND recipient = ANY(%s)",
                        (addresses,)).fetchall()
    return {r["recipient"]: r["id"] for r in rows}


def _end_state(conn, delivery_id: int) -> dict[str, object]:
    """What a provider error left: the row, its fallback text, the opt-outs recorded."""
    row = conn.execute("SELECT * FROM registration_notifications WHERE id = %s",
                       (delivery_id,)).fetchone()
    fallback = conn.execute("SELECT status FROM registration_notifications "
                            "WHERE fallback_for = %s", (delivery_id,)).fetchone()
    opt_outs = conn.execute("SELECT count(*) AS n FROM sms_opt_outs").fetchone()["n"]
    return {"status": row["status"], "error_code": row["error_code"],
            "outcome_unknown": row["outcome_unknown"], "attempts": row["attempts"],
            "fallback": fallback and fallback["status"], "opt_outs": opt_outs}


@pytest.mark.parametrize(("steps", "expected"), [
    # Refused for good: the other channel, as the customer allows it.
    (["403:invalid_api_key"], {"status": "failed", "error_code": "invalid_api_key",
                               "outcome_unknown": False, "fallback": "sent"}),
    (["422:validation_error"], {"status": "failed", "error_code": "validation_error",
                                "outcome_unknown": False, "fallback": "sent"}),
    # Resend holds another request under the key: it may have gone, so no text.
    (["409:invalid_idempotent_request"], {"status": "failed",
                                          "error_code": "invalid_idempotent_request",
                                          "outcome_unknown": True, "fallback": None}),
    # Retried until the attempts ran out (SEND_MAX_RETRIES=3): it may have gone.
    (["500:internal_server_error"] * 4, {"status": "failed",
                                         "error_code": "internal_server_error",
                                         "outcome_unknown": True, "fallback": None,
                                         "attempts": 4}),
], ids=["403", "422", "409-idempotent", "500-gave-up"])
def test_the_same_error_ends_a_lone_email_and_a_batch_alike(conn, resend_wire, twilio_wire,
                                                           steps, expected):
    # One e-mail due alone goes by POST /emails, two due together by one
    # POST /emails/batch; Resend answers each request the same way.
    resend_wire.script("alone@example.com", steps)
    alone = _due_emails(conn, ["alone@example.com"], 0)["alone@example.com"]
    assert resend_wire.attempts()[0].idempotency_key == (
        f"regnotify-delivery-{alone}")
    single = _end_state(conn, alone)

    resend_wire.script("pair0@example.com", steps)
    pair = _due_emails(conn, ["pair0@example.com", "pair1@example.com"], 10)
    assert resend_wire.attempts()[-1].idempotency_key.startswith("regnotify-batch-")
    for delivery_id in pair.values():
        assert _end_state(conn, delivery_id) == single
    assert {k: single[k] for k in expected} == expected
    # No error of an e-mail says a number opted out: nothing recorded by either path.
    assert single["opt_outs"] == 0
    assert len(twilio_wire.sends()) == (3 if expected["fallback"] == "sent" else 0)


def _digest(conn, token: str) -> int:
    """A claimed reply digest with one reply in it, due now."""
    from db import replies
    from db.replies import Inbound
    from tasks.database import engine

    conn.execute("UPDATE notification_config SET staff_email = %s", (STAFF,))
    with engine().begin() as c:
        inbound = replies.record(c, message_sid="SM" + "7" * 32, from_phone="+15552220001",
                                 to_phone="+15005550006", body="are my plates in?",
                                 twilio_kind=None)
        assert isinstance(inbound, Inbound)
        replies.join_digest(c, inbound, "+15552220001")
    conn.execute("UPDATE reply_digests SET send_after = now() - interval '1 second'")
    with engine().begin() as c:
        (digest_id,) = replies.claim_digests(c, limit=10, lease_s=60, token=token)
    return digest_id


def test_a_digest_fails_for_good_on_the_same_decision_with_no_other_channel(conn,
                                                                           resend_wire):
    from tasks.worker import send_reply_digest

    digest_id = _digest(conn, "first")
    resend_wire.script(STAFF, ["403:invalid_api_key"])
    outcome = send_reply_digest.run([digest_id], "first")
    assert outcome.status == "failed"
    row = conn.execute("SELECT * FROM reply_digests WHERE id = %s", (digest_id,)).fetchone()
    assert (row["status"], row["error_code"]) == ("failed", "invalid_api_key")
    assert conn.execute("SELECT count(*) AS n FROM registration_notifications"
                        ).fetchone()["n"] == 0


def test_a_digest_retry_beyond_the_broker_horizon_parks_and_the_queue_run_takes_it_again(
        conn, resend_wire, redis_server, pipeline, monkeypatch):
    # The park rule of every send path: a backoff longer than the broker
    # holds a countdown waits in the database. A digest's place there is its
    # lease: it lapses when the backoff is over, and the queue run, woken
    # for it, takes the digest again; no message waits in the broker.
    from tasks.broker.app import QUEUE_EMAIL, QUEUE_TICK, app
    from tasks.worker import send_reply_digest
    from tests.relay_helpers import celery_broker, flush_broker

    monkeypatch.setenv("SEND_RETRY_BACKOFF_BASE", "400")  # a first backoff of 200-400 s
    digest_id = _digest(conn, "first")
    resend_wire.script(STAFF, ["500:internal_server_error"])
    with celery_broker(redis_server.url, pipeline["DATABASE_URL"]):
        flush_broker(redis_server.url)
        app.conf.task_always_eager = False
        try:
            result = send_reply_digest.send_reply_digests.apply(args=([digest_id], "first"))
        finally:
            app.conf.task_always_eager = True
        assert result.get().startswith("retry-parked"), result.get()
        broker = redis.Redis.from_url(redis_server.url)
        assert broker.llen(QUEUE_EMAIL) == 0  # no send waits in the broker
        assert broker.llen(QUEUE_TICK) == 1  # the queue run's wake-up
        flush_broker(redis_server.url)
    row = conn.execute("SELECT *, extract(epoch FROM lease_until - now())::float8 AS left_s "
                       "FROM reply_digests WHERE id = %s", (digest_id,)).fetchone()
    assert row["status"] == "sending" and row["error_code"] == "internal_server_error"
    assert 190 < row["left_s"] < 410, row["left_s"]

    # The backoff is over: the queue run takes the digest again and sends it.
    conn.execute("UPDATE reply_digests SET lease_until = now() - interval '1 second'")
    run_tick()
    row = conn.execute("SELECT * FROM reply_digests WHERE id = %s", (digest_id,)).fetchone()
    assert row["status"] == "sent"
    assert resend_wire.accepted_count(STAFF) == 1


def test_a_parked_digest_is_the_next_wake_up_of_the_queue_run(conn, pipeline):
    # A parked digest waits as its lease, not as a pending row: the next-due
    # job must wake the queue run when the lease lapses, not a cron tick later.
    from tasks.maintenance.job import RunBudget
    from tasks.maintenance.next_due import next_wakeup
    from tasks.settings import get_settings

    digest_id = _digest(conn, "parked")
    conn.execute("UPDATE reply_digests SET lease_until = now() + interval '300 seconds' "
                 "WHERE id = %s", (digest_id,))
    wake = next_wakeup(RunBudget.start(get_settings())).wake_in_s
    assert wake is not None and 290 < wake <= 300, wake


def test_the_decision_table():
    # The one decision, as a table: (error, attempts) -> action and consequences.
    from tasks.providers.base import ProviderError
    from tasks.sending.outcome import decide
    from tasks.settings import get_settings

    settings = get_settings()  # SEND_MAX_RETRIES=3: four attempts
    cases = [
        # error kwargs, attempts, was_unknown -> action, unknown, fall_back, opted_out
        (dict(transient=False), 1, False, ("fail", False, True, False)),
        (dict(transient=False, opt_out=True), 1, False, ("fail", False, False, True)),
        (dict(transient=False, outcome_unknown=True), 1, False, ("fail", True, False, False)),
        (dict(transient=False), 1, True, ("fail", True, False, False)),
        (dict(transient=True), 1, False, ("retry", False, False, False)),
        (dict(transient=True, outcome_unknown=True), 4, False, ("fail", True, False, False)),
        (dict(transient=True), 4, False, ("fail", False, False, False)),
        # A 429 for the request rate: a wait; it accepted nothing, the doubt stays.
        (dict(transient=True, rate_limited=True, outcome_unknown=True), 9, False,
         ("wait", False, False, False)),
        (dict(transient=True, rate_limited=True), 1, True, ("wait", True, False, False)),
    ]
    for kwargs, attempts, was_unknown, expected in cases:
        d = decide(ProviderError("x", "y", **kwargs), attempts, settings,
                   was_unknown=was_unknown)
        assert (d.action, d.outcome_unknown, d.fall_back, d.opted_out) == expected, kwargs


def test_the_park_rule_is_written_once():
    # The broker's horizon and the queue run's wake-up are read in one module
    # of the send path: every path parks by asking it.
    root = Path(__file__).resolve().parent.parent / "tasks" / "sending"
    readers = sorted(p.name for p in root.glob("*.py")
                     if any(name in p.read_text() for name in ("BROKER_HORIZON_S", "arm_wakeup")))
    assert readers == ["outcome.py"]

