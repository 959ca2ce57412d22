"""A real worker against rate-limited stand-ins: a claimed delivery never
outlives its lease waiting for a rate slot (so the sweep never hands it to a
second task), and a customer who changes their mind while their text waits
for its slot is not texted."""

from __future__ import annotations

import time

import pytest

from tests.pg import connect
from tests.reliability import ledger
from tests.reliability.conftest import seed_backlog, wait_drained
from tests.reliability.report import record
from tests.worker_process import WorkerProcess, regnotify_worker_argv

pytestmark = pytest.mark.reliability

THREADS = 64
#: Twilio at one request a second: the backlog takes this many seconds, far
#: longer than the lease (PROVIDER_TIMEOUT_S=1: 2 x 1 + 15 = 17 s), so a task
#: that waited for its slot after its claim would outlive the lease.
TEXTS = 50


def _sms_only(stack, count: int, *, prefix: str) -> list[str]:
    regs = seed_backlog(stack.database_url, count, prefix=prefix)
    with connect(stack.database_url) as conn:
        conn.execute("UPDATE registrations SET notification_pref = 'sms'")
    return regs


def _start(stack, name: str) -> None:
    stack.env.update({
        "TWILIO_RATE_PER_S": "1",
        "PROVIDER_TIMEOUT_S": "1",
        "SWEEP_AFTER_S": "5",
        "WORKER_CONCURRENCY": str(THREADS),
    })
    stack.worker = WorkerProcess(regnotify_worker_argv(THREADS), stack.env,
                                 stack.log_dir / f"{name}.log")
    stack.worker.start(stack.app)
    stack.app.send_task("process_notification_queue")
    stack.ticker.every_s = 1.0
    stack.ticker.start()


def test_slow_rate_many_threads_no_delivery_attempted_twice(stack, twilio_wire, resend_wire):
    # Half a second per answer: a call holds its place at the departure gate
    # until its answer is back and a second more, so calls queue at the gate
    # faster than slots are handed out, and a task can wait there for long.
    twilio_wire.configure(max_rps=1, latency=0.5)
    _sms_only(stack, TEXTS, prefix="+1555610")
    _start(stack, "lease")
    took = wait_drained(stack.database_url, 3 * TEXTS)

    result = ledger.take(stack.database_url, twilio_wire, resend_wire)
    record(f"lease: {TEXTS} texts at 1/s, {THREADS} threads", result, took)
    result.assert_clean()
    assert twilio_wire.overlapping_attempts() == []
    per_number: dict[str, int] = {}
    for send in twilio_wire.sends():
        per_number[send.to] = per_number.get(send.to, 0) + 1
    assert len(per_number) == TEXTS and set(per_number.values()) == {1}, per_number
    with connect(stack.database_url) as conn:
        rows = conn.execute("SELECT status, count(*) AS n, max(attempts) AS most "
                            "FROM registration_notifications WHERE channel = 'sms' "
                            "GROUP BY status").fetchall()
    assert [(r["status"], r["n"]) for r in rows] == [("sent", TEXTS)], rows
    # One claim each: no second task ever took a delivery whose first still
    # waited. (The sweep may still publish a second task for a delivery whose
    # first waits, unclaimed, at the gate: that one finds it taken or done.)
    assert rows[0]["most"] == 1, rows


def test_texts_waiting_for_their_slot_are_not_sent_after_a_switch_to_email(
        stack, twilio_wire, resend_wire):
    count = 20
    twilio_wire.configure(max_rps=1, latency=0.05)
    regs = _sms_only(stack, count, prefix="+1555620")
    _start(stack, "consent")
    deadline = time.monotonic() + 60
    while twilio_wire.accepted_count() < 3:
        assert time.monotonic() < deadline, "no text went out"
        time.sleep(0.05)
    # Every customer switches to e-mail while most texts still wait their turn.
    with connect(stack.database_url) as conn:
        changed_at = conn.execute(
            "UPDATE registrations SET notification_pref = 'email' "
            "RETURNING clock_timestamp() AS at").fetchone()["at"]
    switched = time.time()
    wait_drained(stack.database_url, 3 * count)

    with connect(stack.database_url) as conn:
        rows = conn.execute("SELECT * FROM registration_notifications WHERE channel = 'sms'"
                            ).fetchall()
    sent = [r for r in rows if r["status"] == "sent"]
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert len(sent) + len(skipped) == count == len(regs)
    assert {r["skip_reason"] for r in skipped} == {"preference"}
    assert len(skipped) >= count // 2, (len(sent), len(skipped))
    # A text that went was claimed before the switch; none reached Twilio
    # after it (a claim already under way may still land just after).
    assert all(r["last_attempt_at"] <= changed_at for r in sent)
    late = [s for s in twilio_wire.sends() if s.accepted_at > switched + 1.0]
    assert late == [], late
    assert twilio_wire.accepted_count() == len(sent)
