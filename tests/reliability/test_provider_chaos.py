"""Providers misbehaving: 5xx, bursts of 429 with Retry-After, timeouts after acceptance."""

from __future__ import annotations

import time

import pytest

from tests.reliability import ledger
from tests.reliability.conftest import seed_backlog, wait_drained
from tests.reliability.report import record

pytestmark = pytest.mark.reliability

BACKLOG = 150


def test_chaos_sends_each_message_once(stack, twilio_wire, resend_wire):
    for wire in (twilio_wire, resend_wire):
        wire.configure(latency=0.02, error_rate=0.3, error_statuses=[500, 502, 503],
                       timeout_after_accept=2.5, timeout_after_accept_rate=0.1, seed=7)
        wire.rate_limit(count=25, retry_after=1)  # a burst of 429s at the start
    seed_backlog(stack.database_url, BACKLOG)
    # E-mails go in batches; small ones, so Resend sees enough requests for
    # every kind of fault to land on some (a timeout after accepting a batch too).
    stack.env["RESEND_BATCH_SIZE"] = "5"
    stack.new_worker().start(stack.app)
    stack.ticker.start()
    started = time.monotonic()
    took = wait_drained(stack.database_url, 240)
    result = ledger.take(stack.database_url, twilio_wire, resend_wire)
    record("provider chaos: 30% 5xx, 429 burst, 2 s timeouts after accept", result, took)
    result.assert_clean()
    assert result.sent + result.failed == 2 * BACKLOG
    assert result.sent >= 2 * BACKLOG * 0.98  # 12 retries make a final failure unlikely
    stats = [w.stats() for w in (twilio_wire, resend_wire)]
    assert all(s["outcomes"].get("rate_limited", 0) > 0 for s in stats), stats
    assert all(s["outcomes"].get("server_error", 0) > 0 for s in stats), stats
    assert all(s["outcomes"].get("accepted_timeout", 0) > 0 for s in stats), stats
    assert time.monotonic() - started < 240
