"""Replies end to end: signed webhooks into the relay, a real worker e-mails staff once.

No tick after the replies but the first: the queue run that finds the
digest not yet due arms its own wake-up for the end of the debounce window.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import provider_env
from tests.pg import connect, new_registration
from tests.relay_helpers import twilio_post
from tests.worker_process import WorkerProcess, regnotify_worker_argv

pytest_plugins = ["tests.relay_helpers"]
pytestmark = pytest.mark.e2e

STAFF = "desk@lonestar.test"
DANA = "+15557654321"


def _wait_sent(url: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    with connect(url) as conn:
        while True:
            row = conn.execute("SELECT * FROM reply_digests WHERE status = 'sent'").fetchone()
            if row is not None:
                return row
            if time.monotonic() > deadline:
                raise AssertionError(f"no digest sent after {timeout}s")
            time.sleep(0.2)


def test_a_real_worker_emails_staff_once_for_a_burst_of_three_replies(
    tmp_path: Path, broker_app, clean_db, conn, redis_server, twilio_wire, resend_wire,
    relay_client,
):
    reg = new_registration(conn, customer_phone=DANA, customer_name="Dana Driver")
    conn.execute("UPDATE notification_config SET staff_email = %s, "
                 "debounce_window = interval '2 seconds'", (STAFF,))
    env = provider_env(clean_db, redis_server.url, twilio_wire, resend_wire)
    worker = WorkerProcess(regnotify_worker_argv(2), env, tmp_path / "worker.log")
    worker.start(broker_app)
    try:
        client = relay_client()
        bodies = ["Are my plates in?", "I can come Friday", "Thanks!"]
        for i, body in enumerate(bodies):
            params = {"MessageSid": f"SMburst{i:027d}", "From": DANA, "To": "+15005550006",
                      "Body": body, "AccountSid": "AC" + "0" * 32}
            assert twilio_post(client, "/webhooks/twilio/inbound", params).status_code == 200
            # Twilio retries: the same text again changes nothing.
            twilio_post(client, "/webhooks/twilio/inbound", params)
        broker_app.send_task("process_notification_queue")
        digest = _wait_sent(clean_db)
        time.sleep(1.0)  # room for a second e-mail, were there one
    finally:
        worker.stop()
    staff = [s for s in resend_wire.sends() if s.to == STAFF]
    assert len(staff) == 1 and not resend_wire.duplicates()
    assert staff[0].id == digest["provider_message_id"] and digest["reply_count"] == 3
    assert all(body in staff[0].text for body in bodies) and reg in staff[0].text
    assert conn.execute("SELECT count(*) AS n FROM inbound_messages").fetchone()["n"] == 3
