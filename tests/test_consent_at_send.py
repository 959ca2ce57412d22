"""A customer who changes their mind while a message waits is heard: the
preference, the SMS opt-out and the contact are checked again when a
delivery is claimed for sending, in the claim itself, on every path (eager
Celery, the real SDKs against the wire stand-ins)."""

from __future__ import annotations

import json

import pytest

from tests.cli_runner import cli
from tests.flow import change_stage, make_due, run_tick
from tests.pg import connect, new_registration

pytestmark = pytest.mark.usefixtures("pipeline")

PHONE = "+15553210001"
EMAIL = "kim@example.com"


def _queued(conn, *, pref: str = "both", **fields) -> tuple[str, dict[str, int]]:
    """A registration with one due change, claimed into deliveries but not sent."""
    from db.queue import claim_due
    from tasks.database import engine

    reg = new_registration(conn, **{"customer_phone": PHONE, "customer_email": EMAIL,
                                    "notification_pref": pref, **fields})
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    with engine().begin() as c:
        claim_due(c, 10)  # the deliveries are written; their tasks are not published
    rows = conn.execute("SELECT id, channel FROM registration_notifications "
                        "WHERE registration_id = %s", (reg,)).fetchall()
    return reg, {r["channel"]: r["id"] for r in rows}


def _row(conn, delivery_id: int) -> dict:
    return conn.execute("SELECT * FROM registration_notifications WHERE id = %s",
                        (delivery_id,)).fetchone()


def _customer_sets(url: str, reg: str, pref: str) -> None:
    """The customer changes their own preference through the API's role, committed."""
    phone = PHONE.lstrip("+")
    with connect(url, autocommit=False) as c:
        c.execute("SELECT set_config('request.jwt.claims', %s, true)",
                  (json.dumps({"role": "authenticated", "sub": "cust-kim", "phone": phone}),))
        c.execute("SET LOCAL ROLE authenticated")
        c.execute("UPDATE registrations SET notification_pref = %s WHERE id = %s", (pref, reg))
        c.commit()


def _timeline(capsys, reg: str) -> str:
    code, out, err = cli(capsys, "status", reg)
    assert code == 0, err
    return " ".join(out.split())


def test_single_text_skipped_when_the_customer_switches_to_email(conn, clean_db, capsys,
                                                                 twilio_wire):
    from tasks.worker.send_sms import send_sms

    reg, ids = _queued(conn)
    _customer_sets(clean_db, reg, "email")
    assert send_sms.delay(ids["sms"]).get() == "skipped preference"
    row = _row(conn, ids["sms"])
    assert (row["status"], row["skip_reason"], row["attempts"]) == ("skipped", "preference", 0)
    assert twilio_wire.attempts() == []
    out = _timeline(capsys, reg)
    assert "the customer changed the preference both -> email at" in out, out
    assert "while it waited; not sent" in out


def test_the_claim_itself_refuses_when_the_preference_changed_after_the_load(conn):
    # The check that counts is in the claim statement: a task that loaded the
    # delivery before the change still cannot take it.
    from db import deliveries
    from tasks.database import autocommit_engine

    reg, ids = _queued(conn)
    conn.execute("UPDATE registrations SET notification_pref = 'none' WHERE id = %s", (reg,))
    with autocommit_engine().connect() as c:
        claimed = deliveries.claim(c, ids["sms"], lease_s=30, recipient=PHONE,
                                   provider="twilio", body="b", subject=None, template_used="t",
                                   language="en")
        moved = deliveries.claim(c, ids["email"], lease_s=30, recipient="old@example.com",
                                 provider="resend", body="b", subject="s", template_used="t",
                                 language="en")
    assert claimed == deliveries.Refused("preference")
    assert moved == deliveries.Refused("preference")
    assert _row(conn, ids["sms"])["status"] == "skipped"
    # An address changed since the render: nothing taken, nothing ended.
    _reg2, ids2 = _queued(conn, customer_phone="+15553210002")
    with autocommit_engine().connect() as c:
        stale = deliveries.claim(c, ids2["email"], lease_s=30, recipient="old@example.com",
                                 provider="resend", body="b", subject="s", template_used="t",
                                 language="en")
    assert stale == deliveries.Refused(None)
    assert _row(conn, ids2["email"])["status"] == "queued"


def test_single_email_skipped_when_the_customer_switches_to_sms(conn, capsys, resend_wire):
    from tasks.worker.send_email import send_email

    reg, ids = _queued(conn)
    conn.execute("UPDATE registrations SET notification_pref = 'sms' WHERE id = %s", (reg,))
    assert send_email.delay(ids["email"]).get() == "skipped preference"
    assert _row(conn, ids["email"])["skip_reason"] == "preference"
    assert resend_wire.attempts() == []
    out = _timeline(capsys, reg)
    assert "a direct database connection" in out and "both -> sms" in out, out


def test_batch_member_who_chose_none_is_left_out(conn, resend_wire):
    from db.queue import claim_due
    from tasks.database import engine
    from tasks.worker.send_email import send_email_batch

    regs = []
    for i in range(3):
        reg = new_registration(conn, customer_email=f"bm{i}@example.com",
                               customer_phone=f"+1555321{i:04d}", notification_pref="email")
        change_stage(conn, reg, "sticker_ready")
        regs.append(reg)
    make_due(conn)
    with engine().begin() as c:
        ids = [r.id for r in claim_due(c, 10).deliveries if r.channel == "email"]
    conn.execute("UPDATE registrations SET notification_pref = 'none' WHERE id = %s", (regs[1],))
    send_email_batch.delay(ids).get()
    status = {str(r["registration_id"]): (r["status"], r["skip_reason"]) for r in conn.execute(
        "SELECT * FROM registration_notifications WHERE channel = 'email'")}
    assert status == {regs[0]: ("sent", None), regs[1]: ("skipped", "preference"),
                      regs[2]: ("sent", None)}
    assert sorted(s.to for s in resend_wire.sends()) == ["bm0@example.com", "bm2@example.com"]


def test_held_text_released_in_the_morning_is_skipped_after_a_switch_to_none(
        conn, capsys, twilio_wire, resend_wire):
    reg, ids = _queued(conn, pref="sms")
    # Held overnight for quiet hours (as the claim holds it), and due now.
    conn.execute("UPDATE registration_notifications SET hold_reason = 'quiet_hours', "
                 "held_until = now() - interval '1 second', hold_zone = 'UTC' WHERE id = %s",
                 (ids["sms"],))
    conn.execute("UPDATE registrations SET notification_pref = 'none' WHERE id = %s", (reg,))
    run_tick()
    row = _row(conn, ids["sms"])
    assert (row["status"], row["skip_reason"], row["hold_reason"]) == (
        "skipped", "preference", None)
    assert twilio_wire.attempts() == []
    out = _timeline(capsys, reg)
    assert "sms -> none" in out and "while it waited" in out, out


def test_fallback_skipped_when_the_customer_chose_none_meanwhile(conn, twilio_wire):
    from db import deliveries
    from tasks.database import engine
    from tasks.sending.fallback import fall_back
    from tasks.worker.send_sms import send_sms

    reg, ids = _queued(conn, pref="email")
    with engine().begin() as c:
        deliveries.mark_failed(c, ids["email"], "validation_error", "refused")
        fallback = fall_back(c, ids["email"])
    assert fallback is not None and fallback.ref.id == ids["sms"]
    conn.execute("UPDATE registrations SET notification_pref = 'none' WHERE id = %s", (reg,))
    assert send_sms.delay(ids["sms"]).get() == "skipped preference"
    assert twilio_wire.attempts() == []


def test_fallback_email_skipped_once_the_phone_opted_out(conn, resend_wire):
    # A fallback goes on the preference 'sms' (that is what a fallback is),
    # but never to a customer whose phone opted out meanwhile.
    from db import deliveries
    from tasks.database import engine
    from tasks.sending.fallback import fall_back
    from tasks.worker.send_email import send_email

    _reg, ids = _queued(conn, pref="sms")
    with engine().begin() as c:
        deliveries.mark_failed(c, ids["sms"], "30005", "unknown destination")
        assert fall_back(c, ids["sms"]) is not None
    conn.execute("INSERT INTO sms_opt_outs (phone, opted_out, source) VALUES (%s, true, 'test')",
                 (PHONE,))
    assert send_email.delay(ids["email"]).get() == "skipped opted_out"
    assert resend_wire.attempts() == []


def test_fallback_email_still_goes_on_the_preference_sms(conn, resend_wire):
    from db import deliveries
    from tasks.database import engine
    from tasks.sending.fallback import fall_back
    from tasks.worker.send_email import send_email

    _reg, ids = _queued(conn, pref="sms")
    with engine().begin() as c:
        deliveries.mark_failed(c, ids["sms"], "30005", "unknown destination")
        assert fall_back(c, ids["sms"]) is not None
    assert send_email.delay(ids["email"]).get().startswith("sent")
    assert [s.to for s in resend_wire.sends()] == [EMAIL]


def test_retry_after_a_transient_error_is_skipped_after_a_switch(conn, twilio_wire):
    from tasks.sending import delivery_flow

    reg, ids = _queued(conn, pref="sms")
    twilio_wire.script(PHONE, ["503"])
    first = delivery_flow.run(ids["sms"], "sms")
    assert first.status == "retry", first
    conn.execute("UPDATE registrations SET notification_pref = 'email' WHERE id = %s", (reg,))
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now() WHERE id = %s",
                 (ids["sms"],))
    again = delivery_flow.run(ids["sms"], "sms", None)
    assert again.status == "skipped" and again.detail == "preference", again
    assert twilio_wire.accepted_count() == 0
    assert len(twilio_wire.attempts()) == 1


def test_retry_failed_redrive_is_skipped_after_a_switch(conn, capsys, twilio_wire):
    from db import deliveries
    from tasks.database import engine

    reg, ids = _queued(conn, pref="sms")
    with engine().begin() as c:
        deliveries.mark_failed(c, ids["sms"], "http_503", "gave up")
    conn.execute("UPDATE registrations SET notification_pref = 'none' WHERE id = %s", (reg,))
    code, _out, err = cli(capsys, "retry-failed")
    assert code == 0, err
    row = _row(conn, ids["sms"])
    assert (row["status"], row["skip_reason"]) == ("skipped", "preference")
    assert twilio_wire.attempts() == []


def test_texts_stop_when_the_number_opts_out_while_waiting(conn, twilio_wire):
    from tasks.worker.send_sms import send_sms

    _reg, ids = _queued(conn, pref="sms")
    conn.execute("INSERT INTO sms_opt_outs (phone, opted_out, source) VALUES (%s, true, 'test')",
                 (PHONE,))
    assert send_sms.delay(ids["sms"]).get() == "skipped opted_out"
    assert twilio_wire.attempts() == []
