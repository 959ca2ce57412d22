"""Each queue-run job alone (tasks/maintenance/), against the real database.

Every test calls one job with a run's budget, as the queue run would, and
checks both its count and that the work of the other jobs was left alone:
each job is a whole piece of maintenance on its own. Eager Celery, so the
send tasks a job publishes run at once against the Twilio/Resend wires.
"""

from __future__ import annotations

import time

import pytest

from tests.flow import by_channel, change_stage, deliveries, make_due
from tests.pg import new_registration
from tests.quiet_helpers import held, set_quiet_window

pytestmark = pytest.mark.usefixtures("pipeline")
pytest_plugins = ["tests.relay_helpers"]

PHONE = "+15551238001"
OTHER = "+15551238002"


def _budget(**settings: object):
    """A fresh run's budget, with the process's settings (optionally changed)."""
    from tasks.maintenance.job import RunBudget
    from tasks.settings import get_settings

    return RunBudget.start(get_settings().model_copy(update=settings))


def _claim_without_sending(conn) -> list:
    """Due rows claimed into deliveries whose send tasks were never published."""
    from db.queue import claim_due
    from tasks.database import engine

    make_due(conn)
    with engine().begin() as c:
        return claim_due(c, 100).deliveries


def _unclaimed(conn) -> int:
    return conn.execute("SELECT count(*) AS n FROM notification_queue WHERE NOT sent"
                        ).fetchone()["n"]


def _texted(conn, registration_id: str) -> dict:
    return by_channel(deliveries(conn, registration_id))["sms"]


def test_claim_turns_due_rows_into_sends_batch_by_batch_within_the_budget(conn, twilio_wire):
    from tasks.maintenance.claim import claim_due_rows
    from tasks.maintenance.job import RunBudget

    regs = [new_registration(conn, customer_phone=f"+1555123810{i}", notification_pref="sms")
            for i in range(3)]
    for reg in regs:
        change_stage(conn, reg, "sticker_ready")
    make_due(conn)

    # The run's time is already up: one batch, then it hands over to a fresh run.
    spent = _budget(claim_batch_size=1)
    spent = RunBudget(spent.settings, deadline=time.monotonic() - 1)
    first = claim_due_rows(spent)
    assert (first.closed, first.dispatched, first.batches, first.continued) == (1, 1, 1, True)
    assert _unclaimed(conn) == 2

    rest = claim_due_rows(_budget(claim_batch_size=1))
    # Two full batches, then one that finds nothing and ends the job.
    assert (rest.closed, rest.dispatched, rest.batches, rest.continued) == (2, 2, 3, False)
    assert twilio_wire.accepted_count() == 3
    assert {_texted(conn, reg)["status"] for reg in regs} == {"sent"}
    # Its fields only: the other jobs' counts and the wake-up are not its business.
    assert (rest.swept, rest.released, rest.unparked, rest.reply_digests,
            rest.wake_in_s) == (0, 0, 0, 0, None)


def test_holds_releases_what_quiet_hours_held_once_the_window_opened(conn, twilio_wire):
    from tasks.maintenance.claim import claim_due_rows
    from tasks.maintenance.holds import release_holds

    set_quiet_window(conn, "America/Chicago", -3600, 3600)
    reg = new_registration(conn, customer_phone=PHONE, notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    claim_due_rows(_budget())
    assert len(held(conn, reg)) == 1
    assert release_holds(_budget()).released == 0  # still quiet

    # The window opens; meanwhile another registration's row falls due.
    conn.execute("UPDATE notification_config SET quiet_hours_channels = '{}'")
    conn.execute("UPDATE registration_notifications SET held_until = now() - interval '1 s' "
                 "WHERE registration_id = %s", (reg,))
    other = new_registration(conn, customer_phone=OTHER, notification_pref="sms")
    change_stage(conn, other, "sticker_ready")
    make_due(conn)

    result = release_holds(_budget())
    assert (result.released, result.continued, result.closed) == (1, False, 0)
    assert _texted(conn, reg)["status"] == "sent" and held(conn, reg) == []
    assert twilio_wire.accepted_count(PHONE) == 1
    # The claim is another job's: the other row waits for it.
    assert _unclaimed(conn) == 1 and twilio_wire.accepted_count(OTHER) == 0


def test_sweep_sends_again_what_lost_its_task_and_nothing_else(conn, twilio_wire):
    from tasks.maintenance.sweep import sweep_lost_sends

    reg = new_registration(conn, customer_phone=PHONE, notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    assert len(_claim_without_sending(conn)) == 1
    other = new_registration(conn, customer_phone=OTHER, notification_pref="sms")
    change_stage(conn, other, "sticker_ready")
    make_due(conn)

    assert sweep_lost_sends(_budget()).swept == 0  # too recent to call lost
    conn.execute("UPDATE registration_notifications SET updated_at = now() - interval '1 hour'")
    result = sweep_lost_sends(_budget())
    assert (result.swept, result.closed, result.dispatched) == (1, 0, 0)
    assert _texted(conn, reg)["status"] == "sent"
    assert twilio_wire.accepted_count(PHONE) == 1
    assert _unclaimed(conn) == 1 and twilio_wire.accepted_count(OTHER) == 0
    # Touched as it was swept: not lost again within the window.
    assert sweep_lost_sends(_budget()).swept == 0


def test_unpark_publishes_parked_sends_once_within_the_brokers_horizon(conn, twilio_wire):
    from db import deliveries as db_deliveries
    from tasks.broker.app import BROKER_HORIZON_S
    from tasks.database import engine
    from tasks.maintenance.unpark import unpark_due

    soon = new_registration(conn, customer_phone=PHONE, notification_pref="sms")
    later = new_registration(conn, customer_phone=OTHER, notification_pref="sms")
    for reg in (soon, later):
        change_stage(conn, reg, "sticker_ready")
    refs = _claim_without_sending(conn)
    ids = {str(r["registration_id"]): r["id"] for r in conn.execute(
        "SELECT registration_id, id FROM registration_notifications WHERE channel = 'sms'")}
    assert len(refs) == 2
    with engine().begin() as c:
        db_deliveries.note_wait(c, [ids[soon]], 0.3, parked=True)
        db_deliveries.note_wait(c, [ids[later]], BROKER_HORIZON_S + 60, parked=True)

    result = unpark_due(_budget())
    assert (result.unparked, result.swept, result.wake_in_s) == (1, 0, None)
    sent, waiting = _texted(conn, soon), _texted(conn, later)
    assert sent["status"] == "sent" and not sent["parked"]
    assert waiting["status"] == "queued" and waiting["parked"]
    assert twilio_wire.accepted_count() == 1


def test_digests_mail_staff_the_replies_whose_window_closed(relay_client, conn, resend_wire):
    from tasks.maintenance.digests import claim_reply_digests
    from tests.relay_helpers import twilio_post
    from tests.test_replies import INBOUND, STAFF, _make_digests_due, _staff, _text

    new_registration(conn, customer_phone=PHONE, customer_name="Dana Driver")
    _staff(conn)
    twilio_post(relay_client(), INBOUND, _text("Are my plates in?", phone=PHONE))
    assert claim_reply_digests(_budget()).reply_digests == 0  # still debouncing

    _make_digests_due(conn)
    result = claim_reply_digests(_budget())
    assert (result.reply_digests, result.closed, result.dispatched) == (1, 0, 0)
    (mail,) = [s for s in resend_wire.sends() if s.to == STAFF]
    assert "Are my plates in?" in mail.text
    assert conn.execute("SELECT status FROM reply_digests").fetchone()["status"] == "sent"


def test_next_due_is_the_earliest_work_with_parked_sends_half_a_horizon_early(conn):
    from db import deliveries as db_deliveries
    from tasks.broker.app import BROKER_HORIZON_S
    from tasks.database import engine
    from tasks.maintenance.next_due import next_wakeup

    assert next_wakeup(_budget()).wake_in_s is None  # nothing waits

    parked = new_registration(conn, customer_phone=PHONE, notification_pref="sms")
    change_stage(conn, parked, "sticker_ready")
    [ref] = _claim_without_sending(conn)
    with engine().begin() as c:
        db_deliveries.note_wait(c, [ref.id], BROKER_HORIZON_S + 60, parked=True)
    assert next_wakeup(_budget()).wake_in_s == pytest.approx(60 + BROKER_HORIZON_S / 2, abs=3)

    pending = new_registration(conn, customer_phone=OTHER, notification_pref="sms")
    change_stage(conn, pending, "sticker_ready")
    conn.execute("UPDATE notification_queue SET send_after = now() + interval '30 s' "
                 "WHERE NOT sent")
    result = next_wakeup(_budget())
    assert result.wake_in_s == pytest.approx(30, abs=3)
    # It only reads: the row is still pending, nothing was claimed.
    assert (result.closed, _unclaimed(conn)) == (0, 1)
