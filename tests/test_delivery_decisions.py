"""From due queue rows to deliveries: channels, skips and their reasons (eager Celery)."""

from __future__ import annotations

import pytest

from tests.flow import by_channel, change_stage, deliveries, make_due, run_tick
from tests.pg import new_registration

pytestmark = pytest.mark.usefixtures("pipeline")


@pytest.mark.parametrize(
    ("pref", "sent", "skipped"),
    [
        ("both", {"sms", "email"}, set()),
        ("sms", {"sms"}, {"email"}),
        ("email", {"email"}, {"sms"}),
        ("none", set(), {"sms", "email"}),
    ],
)
def test_preference_decides_channels(conn, twilio_wire, resend_wire, pref, sent, skipped):
    reg = new_registration(conn, notification_pref=pref)
    change_stage(conn, reg, "documents_collected")
    make_due(conn)
    result = run_tick()

    rows = by_channel(deliveries(conn, reg))
    assert {c for c, r in rows.items() if r["status"] == "sent"} == sent
    assert {c for c, r in rows.items() if r["status"] == "skipped"} == skipped
    assert all(r["skip_reason"] == "preference" for r in rows.values() if r["status"] == "skipped")
    assert twilio_wire.accepted_count() == ("sms" in sent)
    assert resend_wire.accepted_count() == ("email" in sent)
    assert result["closed"] == 1 and result["dispatched"] == len(sent)


def test_burst_sends_one_message_naming_the_newest_stage(conn, twilio_wire, resend_wire):
    reg = new_registration(conn, customer_phone="+15551230002")
    for stage in ("documents_collected", "submitted_to_dmv", "dmv_processing"):
        change_stage(conn, reg, stage)
    make_due(conn)
    run_tick()

    [sms] = twilio_wire.sends()
    [email] = resend_wire.sends()
    assert "DMV is processing" in sms.body and sms.to == "+15551230002"
    assert "DMV is processing" in email.subject
    rows = by_channel(deliveries(conn, reg))
    assert rows["sms"]["old_stage"] == "sale_complete"
    assert rows["sms"]["new_stage"] == "dmv_processing"
    assert rows["sms"]["provider_message_id"] == sms.id
    assert rows["email"]["provider_message_id"] == email.id
    assert rows["sms"]["template_used"] == "sms:en/stages/dmv_processing"
    assert rows["email"]["subject"] == email.subject
    assert rows["sms"]["attempts"] == 1 and rows["sms"]["sent_at"] is not None


def test_rows_not_yet_due_are_left_alone(conn, twilio_wire):
    reg = new_registration(conn)
    change_stage(conn, reg, "documents_collected")
    result = run_tick()
    assert result["closed"] == 0
    assert deliveries(conn, reg) == []
    assert conn.execute("SELECT sent FROM notification_queue").fetchone()["sent"] is False


def test_silenced_change_sends_nothing(conn, twilio_wire, resend_wire):
    reg = new_registration(conn)
    change_stage(conn, reg, "documents_collected", silence=True)
    make_due(conn)
    run_tick()
    rows = deliveries(conn, reg)
    assert [(r["status"], r["skip_reason"]) for r in rows] == [("skipped", "silenced")] * 2
    assert twilio_wire.accepted_count() == resend_wire.accepted_count() == 0
    q = conn.execute("SELECT sent, closed_reason FROM notification_queue").fetchone()
    assert q == {"sent": True, "closed_reason": "silenced"}


def test_flip_back_to_the_first_stage_sends_nothing(conn, twilio_wire, resend_wire):
    reg = new_registration(conn)
    change_stage(conn, reg, "documents_collected")
    change_stage(conn, reg, "sale_complete")
    make_due(conn)
    run_tick()
    rows = deliveries(conn, reg)
    assert {(r["status"], r["skip_reason"]) for r in rows} == {("skipped", "no_net_change")}
    assert twilio_wire.accepted_count() == resend_wire.accepted_count() == 0
    reason = conn.execute("SELECT closed_reason FROM notification_queue").fetchone()
    assert reason["closed_reason"] == "no_net_change"


def test_missing_contact_is_skipped_per_channel(conn, twilio_wire, resend_wire):
    reg = new_registration(conn, customer_phone=None)
    change_stage(conn, reg, "documents_collected")
    make_due(conn)
    run_tick()
    rows = by_channel(deliveries(conn, reg))
    assert (rows["sms"]["status"], rows["sms"]["skip_reason"]) == ("skipped", "no_contact")
    assert rows["email"]["status"] == "sent"
    assert twilio_wire.accepted_count() == 0 and resend_wire.accepted_count() == 1


def test_opted_out_phone_gets_no_text(conn, twilio_wire, resend_wire):
    reg = new_registration(conn, customer_phone="+15551230003")
    conn.execute("INSERT INTO sms_opt_outs (phone, source) VALUES ('+15551230003', 'test')")
    change_stage(conn, reg, "documents_collected")
    make_due(conn)
    run_tick()
    rows = by_channel(deliveries(conn, reg))
    assert (rows["sms"]["status"], rows["sms"]["skip_reason"]) == ("skipped", "opted_out")
    assert rows["email"]["status"] == "sent"
    assert twilio_wire.accepted_count() == 0


def test_contact_removed_after_queueing_is_skipped_at_send_time(conn, twilio_wire):
    from db.queue import claim_due
    from tasks.database import engine
    from tasks.worker.send_sms import send_sms

    reg = new_registration(conn, notification_pref="sms")
    change_stage(conn, reg, "documents_collected")
    make_due(conn)
    with engine().begin() as c:
        claimed = claim_due(c, 10)
    [ref] = claimed.deliveries
    conn.execute("UPDATE registrations SET customer_phone = NULL WHERE id = %s", (reg,))
    send_sms.apply((ref.id,))
    row = by_channel(deliveries(conn, reg))["sms"]
    assert (row["status"], row["skip_reason"]) == ("skipped", "no_contact")
    assert twilio_wire.accepted_count() == 0


def test_one_delivery_row_per_queue_row_and_channel(conn):
    reg = new_registration(conn)
    change_stage(conn, reg, "documents_collected")
    make_due(conn)
    run_tick()
    run_tick()
    qid = conn.execute("SELECT id FROM notification_queue").fetchone()["id"]
    with pytest.raises(Exception, match="uq_registration_notifications_queue_channel"):
        conn.execute(
            "INSERT INTO registration_notifications (registration_id, queue_id, channel) "
            "VALUES (%s, %s, 'sms')", (reg, qid))
    assert len(deliveries(conn, reg)) == 2


def test_pruning_processed_queue_rows_keeps_the_delivery_history(conn):
    reg = new_registration(conn)
    change_stage(conn, reg, "documents_collected")
    make_due(conn)
    run_tick()
    before = deliveries(conn, reg)
    assert len(before) == 2

    conn.execute("DELETE FROM notification_queue WHERE sent")

    after = deliveries(conn, reg)
    assert [(d["id"], d["status"], d["queue_id"]) for d in after] == [
        (d["id"], d["status"], d["queue_id"]) for d in before]


def test_large_backlog_is_claimed_in_batches(conn, twilio_wire, resend_wire, monkeypatch):
    from tests.conftest import reset_process_state

    monkeypatch.setenv("CLAIM_BATCH_SIZE", "50")
    reset_process_state()
    conn.execute(
        "INSERT INTO registrations (customer_name, customer_phone, notification_pref) "
        "SELECT 'Customer ' || i, '+1555' || lpad(i::text, 7, '0'), 'sms' "
        "FROM generate_series(1, 120) AS i")
    conn.execute("UPDATE registrations SET current_stage = 'documents_collected'")
    make_due(conn)
    result = run_tick()
    assert result["closed"] == 120 and result["batches"] == 3
    assert twilio_wire.accepted_count() == 120
    assert conn.execute("SELECT count(*) AS n FROM notification_queue WHERE NOT sent"
                        ).fetchone()["n"] == 0


def test_manual_send_messages_the_current_stage(conn, twilio_wire, resend_wire):
    from tasks.cli.main import main

    reg = new_registration(conn, notification_pref="sms", current_stage="sticker_ready")
    assert main(["send", reg, "--inline"]) == 0
    [sms] = twilio_wire.sends()
    assert "ready" in sms.body
    q = conn.execute("SELECT closed_reason FROM notification_queue").fetchone()
    assert q["closed_reason"] == "manual"


def test_manual_send_refuses_unknown_registration(conn, capsys):
    from tasks.cli.main import main

    assert main(["send", "00000000-0000-0000-0000-000000000000", "--inline"]) == 2
    assert "no registration" in capsys.readouterr().err
    assert main(["send", "not-a-uuid"]) == 2
    assert "not a registration id" in capsys.readouterr().err


def test_manual_send_says_when_nothing_will_be_sent(conn, capsys, twilio_wire, resend_wire):
    from tasks.cli.main import main

    quiet = new_registration(conn, notification_pref="none")
    assert main(["send", quiet, "--inline"]) == 2
    err = capsys.readouterr().err
    assert "nothing will be sent" in err and "notification_pref = none" in err
    nobody = new_registration(conn, notification_pref="sms", customer_phone=None)
    assert main(["send", nobody]) == 2
    assert "no phone number on file" in capsys.readouterr().err
    opted = new_registration(conn, notification_pref="both", customer_phone="+15551230009")
    conn.execute("INSERT INTO sms_opt_outs (phone, source) VALUES ('+15551230009', 'test')")
    assert main(["send", opted, "--inline"]) == 0
    out = capsys.readouterr().out
    assert "the phone number opted out" in out and "(e-mail)" in out
    # Nothing was queued for the two refused; the third went by e-mail only.
    assert conn.execute("SELECT count(*) AS n FROM notification_queue").fetchone()["n"] == 1
    assert twilio_wire.accepted_count() == 0 and resend_wire.accepted_count() == 1


def test_staff_opt_out_takes_the_one_opt_out_path(conn, capsys, twilio_wire, resend_wire):
    from tasks.cli.main import main

    reg = new_registration(conn, customer_phone="+15551230007", notification_pref="both")
    assert main(["opt-out", "+15551230007"]) == 0
    assert "+*******0007 opted out" in capsys.readouterr().out
    row = conn.execute("SELECT opted_out, source FROM sms_opt_outs").fetchone()
    assert (row["opted_out"], row["source"]) == (True, "staff")
    change_stage(conn, reg, "documents_collected")
    make_due(conn)
    run_tick()
    rows = by_channel(deliveries(conn, reg))
    assert (rows["sms"]["status"], rows["sms"]["skip_reason"]) == ("skipped", "opted_out")
    assert rows["email"]["status"] == "sent"
    # The customer's choice is theirs: the opt-out did not rewrite it.
    assert conn.execute("SELECT notification_pref FROM registrations").fetchone(
        )["notification_pref"] == "both"
    assert main(["opt-out", "+15551230007", "--undo"]) == 0
    assert conn.execute("SELECT opted_out FROM sms_opt_outs").fetchone()["opted_out"] is False
    assert main(["opt-out", "555-1234"]) == 2
    assert "not an E.164 phone number" in capsys.readouterr().err
    assert twilio_wire.accepted_count() == 0
