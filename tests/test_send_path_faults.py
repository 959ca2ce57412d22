"""The six sequences of issue 30, each a test that failed before its fix.

Eager Celery against the real PostgreSQL, Redis and the real SDKs talking to
the wire stand-ins; each test drives the real task code step by step.
"""

from __future__ import annotations

import pytest

from tests.flow import change_stage, make_due
from tests.pg import new_registration
from tests.quiet_helpers import set_quiet_window

pytestmark = pytest.mark.usefixtures("pipeline")


def _emails(conn) -> list[dict]:
    return conn.execute(
        "SELECT * FROM registration_notifications WHERE channel = 'email' ORDER BY id"
    ).fetchall()


def _claim_due() -> dict[str, list[int]]:
    from db.queue import claim_due
    from tasks.database import engine

    with engine().begin() as c:
        refs = claim_due(c, 100).deliveries
    out: dict[str, list[int]] = {"sms": [], "email": []}
    for ref in refs:
        out[ref.channel].append(ref.id)
    return out


def _per_recipient(sends) -> dict[str, int]:
    counts: dict[str, int] = {}
    for send in sends:
        counts[send.to] = counts.get(send.to, 0) + 1
    return counts


# ── 2 ─ a batch's "outcome unknown" survives a quota 429 ────────────────────

def test_2_a_quota_429_after_a_lost_batch_answer_keeps_it_unknown(conn, resend_wire):
    from tasks import email_batch

    # Resend accepts the batch and the answer is lost; the retry (same key)
    # meets the daily quota. Then one member switches to `none`.
    resend_wire.script("q0@example.com", ["timeout_after_accept:2", "daily_quota_exceeded"])
    regs = []
    for i in range(3):
        reg = new_registration(conn, customer_email=f"q{i}@example.com",
                               notification_pref="email", customer_phone=f"+1555333{i:04d}")
        change_stage(conn, reg, "sticker_ready")
        regs.append(reg)
    make_due(conn)
    ids = _claim_due()["email"]
    first = email_batch.run(ids)
    assert first.status == "retry", first
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")
    second = email_batch.run(ids)
    assert second.status == "retry" and "daily_quota" in second.detail, second

    conn.execute("UPDATE registrations SET notification_pref = 'none' WHERE id = %s", (regs[2],))
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")
    email_batch.run(ids)
    # Each customer got the first, accepted e-mail and no second one.
    assert _per_recipient(resend_wire.sends()) == {f"q{i}@example.com": 1 for i in range(3)}
    rows = {str(r["registration_id"]): r for r in _emails(conn)}
    for reg in regs[:2]:
        assert (rows[reg]["status"], rows[reg]["error_code"], rows[reg]["outcome_unknown"]) == (
            "failed", "outcome_unknown", True)


# ── 3 ─ a single e-mail's 409 after a lost answer is not "not sent" ─────────

def test_3_a_409_after_a_lost_answer_is_unknown_and_never_falls_back(conn, resend_wire,
                                                                     twilio_wire):
    from tasks import delivery_flow

    resend_wire.script("solo@example.com", ["timeout_after_accept:2"])
    reg = new_registration(conn, customer_email="solo@example.com", notification_pref="email",
                           customer_phone="+15553330100")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    (delivery_id,) = _claim_due()["email"]
    first = delivery_flow.run(delivery_id, "email")
    assert first.status == "retry", first
    # The customer changes language: the retry's payload differs under the same key.
    conn.execute("UPDATE registrations SET language = 'es' WHERE id = %s", (reg,))
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")
    second = delivery_flow.run(delivery_id, "email")
    assert second.status == "failed", second

    # No text in its place: the e-mail may well have gone out.
    assert twilio_wire.accepted_count() == 0
    (row,) = _emails(conn)
    assert (row["status"], row["error_code"], row["outcome_unknown"]) == (
        "failed", "invalid_idempotent_request", True)
    assert conn.execute("SELECT count(*) AS n FROM registration_notifications "
                        "WHERE fallback_for IS NOT NULL").fetchone()["n"] == 0
    assert resend_wire.accepted_count() == 1


# ── 5 ─ quiet hours are checked again at the claim ──────────────────────────

def test_5_a_retry_that_comes_due_inside_quiet_hours_waits_for_the_morning(conn, twilio_wire):
    from tasks import delivery_flow

    # Daytime at the queue run: no window now. The first attempt meets a 5xx.
    set_quiet_window(conn, "America/Chicago", 3600, 7200)
    twilio_wire.script("+15553330200", ["500"])
    reg = new_registration(conn, customer_phone="+15553330200", notification_pref="sms",
                           time_zone="America/Chicago")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    (delivery_id,) = _claim_due()["sms"]
    first = delivery_flow.run(delivery_id, "sms")
    assert first.status == "retry", first

    # The retry comes due after the window opened in the customer's zone.
    set_quiet_window(conn, "America/Chicago", -60, 3600)
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")
    second = delivery_flow.run(delivery_id, "sms")
    assert second.status == "quiet-hours", second
    assert twilio_wire.accepted_count() == 0
    row = conn.execute("SELECT * FROM registration_notifications WHERE id = %s",
                       (delivery_id,)).fetchone()
    assert row["status"] == "sending" and row["parked"] and row["lease_until"] is None
    opens = conn.execute("SELECT now() + interval '3600 seconds' AS t").fetchone()["t"]
    assert abs((row["next_attempt_at"] - opens).total_seconds()) < 120


def test_5_a_burst_sent_with_now_still_bypasses_quiet_hours_at_the_claim(conn, twilio_wire):
    from tasks import delivery_flow

    set_quiet_window(conn, "UTC", -60, 3600)
    reg = new_registration(conn, customer_phone="+15553330300", notification_pref="sms",
                           time_zone="UTC")
    change_stage(conn, reg, "sticker_ready")
    conn.execute("UPDATE notification_queue SET bypass_quiet_hours = true")
    make_due(conn)
    (delivery_id,) = _claim_due()["sms"]
    assert delivery_flow.run(delivery_id, "sms").status == "sent"
    assert twilio_wire.accepted_count() == 1
