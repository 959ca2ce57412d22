"""Rows that vanish or change under the pipeline: nothing crashes, nothing is sent wrongly."""

from __future__ import annotations

import pytest

from tests.flow import change_stage, deliveries, make_due, run_tick
from tests.pg import new_registration

pytestmark = pytest.mark.usefixtures("pipeline")


def test_registration_deleted_with_a_pending_row(conn, twilio_wire, resend_wire):
    reg = new_registration(conn)
    change_stage(conn, reg, "documents_collected")
    make_due(conn)
    conn.execute("DELETE FROM registrations WHERE id = %s", (reg,))
    result = run_tick()
    assert result["closed"] == 0 and result["dispatched"] == 0
    assert twilio_wire.accepted_count() == resend_wire.accepted_count() == 0


def test_registration_deleted_between_claim_and_send(conn, twilio_wire, resend_wire):
    from db.queue import claim_due
    from tasks.database import engine
    from tasks.worker.send_email import send_email
    from tasks.worker.send_sms import send_sms

    reg = new_registration(conn)
    change_stage(conn, reg, "documents_collected")
    make_due(conn)
    with engine().begin() as c:
        refs = claim_due(c, 10).deliveries
    conn.execute("DELETE FROM registrations WHERE id = %s", (reg,))
    outcomes = [(send_sms if r.channel == "sms" else send_email).apply((r.id,)).get()
                for r in refs]
    assert outcomes == ["gone the delivery or its registration was deleted"] * 2
    assert deliveries(conn) == []
    assert twilio_wire.accepted_count() == resend_wire.accepted_count() == 0


def test_send_task_for_an_unknown_or_mismatched_delivery(conn, twilio_wire):
    from tasks.worker.send_email import send_email
    from tasks.worker.send_sms import send_sms

    assert send_sms.apply((987654,)).get().startswith("gone")
    reg = new_registration(conn, notification_pref="sms")
    change_stage(conn, reg, "documents_collected")
    make_due(conn)
    run_tick()
    sms = next(r for r in deliveries(conn, reg) if r["channel"] == "sms")
    # An e-mail task pointed at an SMS delivery must not send it by e-mail.
    assert send_email.apply((sms["id"],)).get().startswith("ignored")
    assert twilio_wire.accepted_count() == 1


def test_email_changed_after_queueing_goes_to_the_new_address(conn, resend_wire):
    from db.queue import claim_due
    from tasks.database import engine
    from tasks.worker.send_email import send_email

    reg = new_registration(conn, notification_pref="email", customer_email="old@example.com")
    change_stage(conn, reg, "documents_collected")
    make_due(conn)
    with engine().begin() as c:
        [ref] = claim_due(c, 10).deliveries
    conn.execute("UPDATE registrations SET customer_email = 'new@example.com' WHERE id = %s",
                 (reg,))
    send_email.apply((ref.id,))
    [sent] = resend_wire.sends()
    assert sent.to == "new@example.com"
    row = deliveries(conn, reg)[0]
    assert row["recipient"] == "new@example.com" and row["status"] == "sent"
