"""Quiet hours and fallback end to end: a real worker on a real Redis, the real SDKs
against the wires. The held text leaves when the window opens, woken by the
queue run's own wake-up, not before."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import provider_env
from tests.flow import by_channel, change_stage, deliveries, make_due
from tests.pg import new_registration
from tests.quiet_helpers import db_now, held, set_quiet_window
from tests.relay_helpers import wait_for
from tests.worker_process import WorkerProcess, regnotify_worker_argv

pytestmark = pytest.mark.e2e

OPENS_IN_S = 10


@pytest.fixture()
def worker(tmp_path: Path, broker_app, clean_db, redis_server, twilio_wire, resend_wire
           ) -> Iterator[WorkerProcess]:
    env = provider_env(clean_db, redis_server.url, twilio_wire, resend_wire)
    proc = WorkerProcess(regnotify_worker_argv(2), env, tmp_path / "worker.log")
    proc.start(broker_app)
    try:
        yield proc
    finally:
        proc.stop()


def test_held_texts_go_when_the_window_opens_and_a_change_during_the_hold_sends_one(
    conn, worker, broker_app, twilio_wire
):
    # Customers in UTC: quiet since an hour ago, open again in OPENS_IN_S seconds.
    set_quiet_window(conn, "UTC", -3600, OPENS_IN_S)
    one = new_registration(conn, customer_phone="+15551239101", notification_pref="sms",
                           time_zone="UTC")
    two = new_registration(conn, customer_phone="+15551239102", notification_pref="sms",
                           time_zone="UTC")
    for reg in (one, two):
        change_stage(conn, reg, "documents_collected")
    make_due(conn)
    broker_app.send_task("process_notification_queue")
    wait_for(lambda: held(conn, one) and held(conn, two), timeout=20)

    # Two changes later, customer two's text is replaced by the newest stage's.
    change_stage(conn, two, "dmv_processing")
    change_stage(conn, two, "sticker_ready")
    make_due(conn)
    broker_app.send_task("process_notification_queue")
    wait_for(lambda: [r for r in deliveries(conn, two) if r["skip_reason"] == "superseded"],
             timeout=20)
    [opening] = {r["held_until"] for r in held(conn, one) + held(conn, two)} or [None]
    assert twilio_wire.accepted_count() == 0

    # Not before the opening...
    while (opening - db_now(conn)).total_seconds() > 0.5:
        assert twilio_wire.accepted_count() == 0
        time.sleep(0.2)
    # ... and soon after it, with no tick from outside: the run armed a wake-up.
    wait_for(lambda: twilio_wire.accepted_count() == 2, timeout=30)
    # The worker records the answer just after the wire counted it.
    wait_for(lambda: not [r for reg in (one, two) for r in deliveries(conn, reg)
                          if r["status"] == "sending"], timeout=10)
    for reg in (one, two):
        [sent] = [r for r in deliveries(conn, reg) if r["status"] == "sent"]
        assert sent["sent_at"] >= opening
    [text] = twilio_wire.sends("+15551239102")
    assert "plates and sticker" in text.body
    assert all(s.received_at >= opening.timestamp() - 0.05 for s in twilio_wire.sends())
    skipped = [(r["new_stage"], r["skip_reason"]) for r in deliveries(conn, two)
               if r["status"] == "skipped" and r["channel"] == "sms"]
    assert skipped == [("documents_collected", "superseded")]


def test_a_permanent_twilio_error_gives_one_email_through_a_worker(
    conn, worker, broker_app, twilio_wire, resend_wire
):
    reg = new_registration(conn, customer_phone="+15005550002", customer_email="w@example.com",
                           notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    broker_app.send_task("process_notification_queue")
    wait_for(lambda: resend_wire.accepted_count() == 1, timeout=30)
    time.sleep(1)
    rows = by_channel(deliveries(conn, reg))
    assert (rows["sms"]["status"], rows["sms"]["error_code"]) == ("failed", "21612")
    assert rows["email"]["status"] == "sent" and rows["email"]["fallback_for"] == rows["sms"]["id"]
    assert resend_wire.accepted_count() == 1 and twilio_wire.accepted_count() == 0
