"""Sequences a review (2 to 5) and the model found, each a test that failed before its fix.

The connection budget (1) and the worst-case bounds (6): tests/test_send_path_bounds.py.

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
    from tasks.sending import email_batch

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
    from tasks.sending import delivery_flow

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


# ── found by the model ──────────────────────────────────────────────────────

def test_model_a_lost_text_then_a_new_number_is_adopted_not_sent_again(conn, twilio_wire):
    # Shrunk from the model's soak run: Twilio accepted the text and the answer
    # was lost; the customer changed number before the retry. The retry looked
    # for the earlier text at the new number, found nothing, and sent a second.
    from tasks.sending import delivery_flow

    twilio_wire.script("+15553330500", ["timeout_after_accept:2"])
    reg = new_registration(conn, customer_phone="+15553330500", notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    (delivery_id,) = _claim_due()["sms"]
    assert delivery_flow.run(delivery_id, "sms").status == "retry"
    conn.execute("UPDATE registrations SET customer_phone = '+15553330501' WHERE id = %s",
                 (reg,))
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")
    again = delivery_flow.run(delivery_id, "sms")
    assert again.status == "sent" and "adopted" in again.detail, again
    assert twilio_wire.accepted_count() == 1
    row = conn.execute("SELECT * FROM registration_notifications WHERE id = %s",
                       (delivery_id,)).fetchone()
    assert row["provider_message_id"] == twilio_wire.sends()[0].id


def test_model_skipped_after_a_lost_answer_still_says_it_may_have_gone(conn, resend_wire):
    # From the model's soak run: Resend accepted the e-mail and the answer was
    # lost; the customer then chose `none`. The delivery is rightly skipped,
    # but it said outcome_unknown = false: the audit denied an e-mail the
    # customer had received.
    from tasks.sending import delivery_flow

    resend_wire.script("gone@example.com", ["timeout_after_accept:2"])
    reg = new_registration(conn, customer_email="gone@example.com", notification_pref="email")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    (delivery_id,) = _claim_due()["email"]
    assert delivery_flow.run(delivery_id, "email").status == "retry"
    conn.execute("UPDATE registrations SET notification_pref = 'none' WHERE id = %s", (reg,))
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")
    assert delivery_flow.run(delivery_id, "email").status == "skipped"
    row = conn.execute("SELECT * FROM registration_notifications WHERE id = %s",
                       (delivery_id,)).fetchone()
    assert (row["status"], row["skip_reason"], row["outcome_unknown"]) == (
        "skipped", "preference", True)
    assert resend_wire.accepted_count() == 1


def test_model_a_retried_text_does_not_adopt_a_later_bursts_identical_text(conn, twilio_wire):
    # From the model's soak run (bursts A -> B -> A of one customer): the first
    # text's answer was lost; before its retry the customer went to another
    # stage and back, and that burst's text, word for word the same, went out.
    # The retry's lookup took the newest text with that body since five
    # minutes before the first attempt: the later burst's. Both deliveries now
    # name that message; the first text, which the customer did get, none.
    from tasks.sending import delivery_flow

    phone = "+15553330900"
    reg = new_registration(conn, customer_phone=phone, notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    (first,) = _claim_due()["sms"]
    twilio_wire.script(phone, ["timeout_after_accept:2"])
    assert delivery_flow.run(first, "sms").status == "retry"
    for stage in ("needs_attention", "sticker_ready"):
        change_stage(conn, reg, stage)
        make_due(conn)
        (later,) = _claim_due()["sms"]
        assert delivery_flow.run(later, "sms").status == "sent"
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now() WHERE id = %s",
                 (first,))
    assert delivery_flow.run(first, "sms").status == "sent"
    recorded = {r["provider_message_id"] for r in conn.execute(
        "SELECT provider_message_id FROM registration_notifications")}
    assert [s.id for s in twilio_wire.sends() if s.id not in recorded] == []


# ── 5 ─ quiet hours are checked again at the claim ──────────────────────────

def test_5_a_retry_that_comes_due_inside_quiet_hours_waits_for_the_morning(conn, twilio_wire):
    from tasks.sending import delivery_flow

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
    from tasks.sending import delivery_flow

    set_quiet_window(conn, "UTC", -60, 3600)
    reg = new_registration(conn, customer_phone="+15553330300", notification_pref="sms",
                           time_zone="UTC")
    change_stage(conn, reg, "sticker_ready")
    conn.execute("UPDATE notification_queue SET bypass_quiet_hours = true")
    make_due(conn)
    (delivery_id,) = _claim_due()["sms"]
    assert delivery_flow.run(delivery_id, "sms").status == "sent"
    assert twilio_wire.accepted_count() == 1


# ── 4 ─ a staff digest goes once, whatever it is grouped with later ──────────

STAFF = "desk@lonestar.test"


def _digest(conn, phone: str, body: str) -> int:
    """A pending reply digest with one reply in it (what the inbound webhook writes)."""
    from db import replies
    from db.replies import Inbound
    from tasks.database import engine

    with engine().begin() as c:
        inbound = replies.record(c, message_sid=f"SM{phone[1:]}{body[:4]}", from_phone=phone,
                                 to_phone="+15005550006", body=body, twilio_kind=None)
        assert isinstance(inbound, Inbound)
        return replies.join_digest(c, inbound, phone)


def test_4_a_digest_sent_before_its_worker_died_is_not_mailed_again_with_a_new_one(
        conn, resend_wire):
    from db import replies
    from tasks.database import engine
    from tasks.providers.registry import email_provider
    from tasks.worker import send_reply_digest

    conn.execute("UPDATE notification_config SET staff_email = %s", (STAFF,))
    for i in range(2):
        _digest(conn, f"+1555222{i:04d}", f"hello {i}")
    conn.execute("UPDATE reply_digests SET send_after = now() - interval '1 second'")
    with engine().begin() as c:
        first_ids = replies.claim_digests(c, limit=10, lease_s=60, token="first")
    assert len(first_ids) == 2

    # The worker dies between Resend's accept and the rows' update: the
    # provider call goes out, and nothing after it runs.
    provider = email_provider()
    original = provider.send_batch

    def send_then_die(emails, key):
        original(emails, key)
        raise SystemExit("worker killed")

    provider.send_batch = send_then_die  # type: ignore[method-assign]
    try:
        with pytest.raises(SystemExit):
            send_reply_digest.run(first_ids, "first")
    finally:
        del provider.send_batch
    assert resend_wire.accepted_count() == 2

    # Its lease lapses; a new digest is due as the next queue run claims.
    conn.execute("UPDATE reply_digests SET lease_until = now() - interval '1 second'")
    _digest(conn, "+15552229999", "a third")
    conn.execute("UPDATE reply_digests SET send_after = now() - interval '1 second' "
                 "WHERE status = 'pending'")
    with engine().begin() as c:
        second_ids = replies.claim_digests(c, limit=10, lease_s=60, token="second")
    assert len(second_ids) == 3
    send_reply_digest.send_reply_digests.apply(args=(second_ids, "second")).get()

    # Three digests, three e-mails to staff: the two are answered from
    # Resend's record under their first key, the third goes once.
    assert resend_wire.accepted_count() == 3, [s.text[:40] for s in resend_wire.sends()]
    assert not resend_wire.duplicates()
    assert {r["status"] for r in conn.execute("SELECT status FROM reply_digests")} == {"sent"}


def test_4_a_digest_that_waited_at_the_gate_past_its_lease_is_leased_again_for_its_call(
        conn, resend_wire, monkeypatch):
    # The digest's send waits at the gate (another call holds the one place a
    # second has) for longer than its lease; the lease is renewed after the
    # wait, so the queue run cannot take the digest while its e-mail is out.
    import threading
    import time

    from db import replies
    from tasks.database import engine
    from tasks.sending.bounds import lease_seconds
    from tasks.sending.delivery_flow import limiter
    from tasks.settings import get_settings
    from tasks.worker.send_reply_digest import send_reply_digests
    from tests.conftest import reset_process_state
    from tests.send_path_model_support import move_clock, reset_clock

    monkeypatch.setenv("RESEND_RATE_PER_S", "1")  # one call in any second
    reset_process_state()
    conn.execute("UPDATE notification_config SET staff_email = %s", (STAFF,))
    _digest(conn, "+15552220500", "waited at the gate")
    conn.execute("UPDATE reply_digests SET send_after = now() - interval '1 second'")
    with engine().begin() as c:
        ids = replies.claim_digests(c, limit=10, lease_s=60, token="first")
    assert len(ids) == 1

    other_call_out = threading.Event()
    release_other = threading.Event()

    def another_call() -> None:
        with limiter("email").call():  # holds the gate's one place
            other_call_out.set()
            release_other.wait(10)

    taken_while_out: list[list[int]] = []

    def while_the_email_is_out(request, phase: str) -> None:
        if phase == "arrived":
            with engine().begin() as c:
                taken_while_out.append(
                    replies.claim_digests(c, limit=10, lease_s=60, token="second"))

    other = threading.Thread(target=another_call)
    other.start()
    assert other_call_out.wait(10)
    results: list[object] = []
    task = threading.Thread(target=lambda: results.append(
        send_reply_digests.apply(args=(ids, "first")).get()))
    resend_wire.pause = while_the_email_is_out
    try:
        task.start()
        # The task took its digest (leased anew, for lease_seconds, at its
        # start), rendered it, and waits at the gate.
        deadline = time.monotonic() + 10
        while not conn.execute("SELECT lease_until < now() + interval '59 seconds' AS t "
                               "FROM reply_digests WHERE id = %s", (ids[0],)).fetchone()["t"]:
            assert time.monotonic() < deadline, "the task never took its digest"
            time.sleep(0.02)
        time.sleep(0.3)
        assert conn.execute("SELECT attempts FROM reply_digests WHERE id = %s",
                            (ids[0],)).fetchone()["attempts"] == 0
        # The wait lasts longer than the lease the digest was taken with.
        move_clock(conn, lease_seconds(get_settings()) + 5)
        release_other.set()
        task.join(30)
        other.join(10)
    finally:
        resend_wire.pause = None
        release_other.set()
        reset_clock(conn)
    assert results and str(results[0]).startswith("sent"), results
    assert taken_while_out == [[]], taken_while_out
    assert resend_wire.accepted_count() == 1
    row = conn.execute("SELECT status, claim_token FROM reply_digests WHERE id = %s",
                       (ids[0],)).fetchone()
    assert (row["status"], row["claim_token"]) == ("sent", "first")
