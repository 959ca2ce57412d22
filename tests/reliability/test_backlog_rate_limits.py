"""A backlog drains at the providers' real limits: nothing lost, nothing twice, no errors.

The wires enforce a per-second limit like Resend (2 requests/s) and Twilio
(20429 above the rate); the worker is a real process on a real broker.
"""

from __future__ import annotations

import math
import re
import time

import pytest

from tests.reliability import ledger
from tests.reliability.conftest import seed_backlog, wait_drained
from tests.reliability.report import record

pytestmark = pytest.mark.reliability

REGISTRATIONS = 300
RESEND_RPS = 2
TWILIO_RPS = 20
BATCH = 100

#: What must never appear in the worker's log while a backlog drains.
FORBIDDEN = re.compile(r"MaxRetriesExceeded|raised unexpected|\bERROR\b")


def email_bound_s(count: int) -> float:
    """The fastest Resend's limit allows: one batch request per 1/rate seconds."""
    return math.ceil(count / BATCH) / RESEND_RPS


def sms_bound_s(count: int) -> float:
    return count / TWILIO_RPS


def test_backlog_of_300_both_drains_at_the_limits_exactly_once(stack, twilio_wire, resend_wire):
    stack.env.update({
        "TWILIO_RATE_PER_S": str(TWILIO_RPS),
        "RESEND_RATE_PER_S": str(RESEND_RPS),
        # Production sweeps after 120 s; 5 s would re-dispatch tasks that are
        # merely waiting their turn in the queue.
        "SWEEP_AFTER_S": "60",
    })
    twilio_wire.configure(max_rps=TWILIO_RPS, latency=0.02)
    resend_wire.configure(max_rps=RESEND_RPS, latency=0.05)
    seed_backlog(stack.database_url, REGISTRATIONS)
    stack.new_worker().start(stack.app)

    started = time.time()
    stack.app.send_task("process_notification_queue")
    stack.ticker.every_s = 5.0
    stack.ticker.start()
    took = wait_drained(stack.database_url, 120)

    result = ledger.take(stack.database_url, twilio_wire, resend_wire)
    record(f"backlog: {REGISTRATIONS} registrations x both at {RESEND_RPS}/s e-mail, "
           f"{TWILIO_RPS}/s SMS", result, took)
    result.assert_clean()
    assert result.sent == 2 * REGISTRATIONS
    assert twilio_wire.accepted_count() == REGISTRATIONS
    assert resend_wire.accepted_count() == REGISTRATIONS

    emails_done = max(s.accepted_at for s in resend_wire.sends()) - started
    texts_done = max(s.accepted_at for s in twilio_wire.sends()) - started
    assert emails_done <= 1.25 * email_bound_s(REGISTRATIONS) + 4, emails_done
    assert texts_done <= 1.25 * sms_bound_s(REGISTRATIONS), texts_done
    # Batches, not 300 single e-mails: three requests at 2/s.
    assert resend_wire.stats()["requests"] <= math.ceil(REGISTRATIONS / BATCH) + 2

    # No second ever held more than the limit, so no 429 was needed.
    assert resend_wire.max_in_any_second() <= RESEND_RPS
    assert twilio_wire.max_in_any_second() <= TWILIO_RPS
    assert "429" not in twilio_wire.stats()["by_status"]

    log = stack.worker.log_path.read_text(errors="replace")
    assert not FORBIDDEN.findall(log), FORBIDDEN.findall(log)[:5]
