"""Quiet hours through the pipeline (eager Celery, real PostgreSQL, Twilio/Resend wires)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.cli_runner import cli
from tests.flow import by_channel, change_stage, deliveries, make_due, run_tick
from tests.pg import new_registration
from tests.quiet_helpers import db_now, held, set_quiet_window, wait_until

pytestmark = pytest.mark.usefixtures("pipeline")
pytest_plugins = ["tests.relay_helpers"]

PHONE = "+15551237001"
EMAIL = "quinn@example.com"


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


def _notify(conn, reg: str, stage: str) -> None:
    change_stage(conn, reg, stage)
    make_due(conn)
    run_tick()


def test_a_text_inside_quiet_hours_is_held_and_sent_when_the_window_opens(
    conn, twilio_wire, resend_wire
):
    # The dealership's zone (no registrations.time_zone): quiet since an hour
    # ago, open again in 3 s. E-mail is not a quiet channel by default.
    now = set_quiet_window(conn, "America/Chicago", -3600, 3)
    reg = new_registration(conn, customer_phone=PHONE, customer_email=EMAIL)
    _notify(conn, reg, "documents_collected")

    rows = by_channel(deliveries(conn, reg))
    sms = rows["sms"]
    assert (sms["status"], sms["hold_reason"], sms["hold_zone"]) == (
        "queued", "quiet_hours", "America/Chicago")
    assert timedelta(seconds=1) < sms["held_until"] - now < timedelta(seconds=4)
    assert rows["email"]["status"] == "sent"
    assert twilio_wire.accepted_count() == 0 and resend_wire.accepted_count() == 1

    # Runs before the opening, including a sweep that finds it "stale", send nothing.
    conn.execute("UPDATE registration_notifications SET updated_at = now() - interval '1 hour' "
                 "WHERE id = %s", (sms["id"],))
    run_tick()
    assert twilio_wire.accepted_count() == 0
    assert held(conn, reg)

    wait_until(conn, sms["held_until"])
    result = run_tick()
    assert result["released"] == 1
    after = by_channel(deliveries(conn, reg))["sms"]
    assert after["status"] == "sent" and after["hold_reason"] is None
    assert after["held_until"] == sms["held_until"]  # kept as history
    assert after["sent_at"] >= sms["held_until"]
    assert twilio_wire.accepted_count(PHONE) == 1


def test_zones_on_each_side_of_the_dealership(conn, twilio_wire):
    # Quiet from 30 to 90 minutes after Chicago's "now", in each customer's local
    # time: New York (an hour ahead) is inside, Chicago and Los Angeles are not.
    now = set_quiet_window(conn, "America/Chicago", 30 * 60, 90 * 60)
    east = new_registration(conn, customer_phone="+15551237101", time_zone="America/New_York",
                            notification_pref="sms")
    home = new_registration(conn, customer_phone="+15551237102", notification_pref="sms")
    west = new_registration(conn, customer_phone="+15551237103",
                            time_zone="America/Los_Angeles", notification_pref="sms")
    for reg in (east, home, west):
        change_stage(conn, reg, "documents_collected")
    make_due(conn)
    run_tick()
    [east_sms] = held(conn, east)
    assert east_sms["hold_zone"] == "America/New_York"
    # Opens at New York's local (Chicago now + 90 min) = 30 minutes from now.
    assert abs((east_sms["held_until"] - now) - timedelta(minutes=30)) < timedelta(seconds=5)
    assert not held(conn, home) and not held(conn, west)
    assert twilio_wire.accepted_count() == 2

    # Now a window around Los Angeles' local time (two hours behind Chicago).
    now = set_quiet_window(conn, "America/Los_Angeles", -30 * 60, 45 * 60)
    for reg in (home, west):
        change_stage(conn, reg, "submitted_to_dmv")
    make_due(conn)
    run_tick()
    [west_sms] = held(conn, west)
    assert west_sms["hold_zone"] == "America/Los_Angeles"
    assert abs((west_sms["held_until"] - now) - timedelta(minutes=45)) < timedelta(seconds=5)
    assert not held(conn, home)
    assert twilio_wire.accepted_count() == 3


def test_a_change_during_the_hold_gives_one_text_naming_the_newest_stage(conn, twilio_wire):
    set_quiet_window(conn, "UTC", -3600, 4)
    reg = new_registration(conn, customer_phone=PHONE, notification_pref="sms", time_zone="UTC")
    _notify(conn, reg, "documents_collected")
    [first] = held(conn, reg)
    _notify(conn, reg, "sticker_ready")
    [second] = held(conn, reg)
    assert second["new_stage"] == "sticker_ready"
    old = conn.execute("SELECT status, skip_reason, hold_reason FROM registration_notifications "
                       "WHERE id = %s", (first["id"],)).fetchone()
    assert old == {"status": "skipped", "skip_reason": "superseded", "hold_reason": None}

    wait_until(conn, second["held_until"])
    run_tick()
    [text] = twilio_wire.sends(PHONE)
    assert "plates and sticker" in text.body and "documents" not in text.body
    sent = [r for r in deliveries(conn, reg) if r["status"] == "sent"]
    assert [r["id"] for r in sent] == [second["id"]]


def test_send_now_overrides_quiet_hours_and_replaces_the_held_text(conn, capsys, twilio_wire):
    set_quiet_window(conn, "America/Chicago", -3600, 3600)
    reg = new_registration(conn, customer_phone=PHONE, notification_pref="sms")
    _notify(conn, reg, "sticker_ready")
    [waiting] = held(conn, reg)

    # Without --now a manual send waits too (and replaces the held one).
    code, out, _ = cli(capsys, "send", reg, "--inline")
    assert code == 0 and "--now sends it at once" in out
    [again] = held(conn, reg)
    assert again["id"] != waiting["id"] and twilio_wire.accepted_count() == 0

    code, out, _ = cli(capsys, "send", reg, "--now", "--inline")
    assert code == 0 and "quiet hours do not apply" in out
    assert twilio_wire.accepted_count(PHONE) == 1
    assert not held(conn, reg)
    statuses = [(r["status"], r["skip_reason"]) for r in deliveries(conn, reg)
                if r["channel"] == "sms"]
    assert statuses == [("skipped", "superseded"), ("skipped", "superseded"), ("sent", None)]


def test_status_and_metrics_show_the_hold(conn, capsys, relay_client):
    set_quiet_window(conn, "America/Chicago", -3600, 3600)
    reg = new_registration(conn, customer_phone=PHONE, notification_pref="sms")
    _notify(conn, reg, "sticker_ready")
    [row] = held(conn, reg)
    local = conn.execute("SELECT to_char(%s AT TIME ZONE 'America/Chicago', 'HH24:MI') AS t",
                         (row["held_until"],)).fetchone()["t"]

    code, out, _ = cli(capsys, "status", reg)
    assert code == 0
    assert f"held for quiet hours until {local} America/Chicago" in out

    body = relay_client().get("/metrics").text
    assert 'regnotify_deliveries_held{channel="sms"} 1.0' in body
    assert 'regnotify_deliveries_held{channel="email"} 0.0' in body


def test_a_morning_backlog_is_released_in_batches_and_sent_once(conn, twilio_wire, monkeypatch):
    from tests.conftest import reset_process_state

    monkeypatch.setenv("CLAIM_BATCH_SIZE", "40")
    reset_process_state()
    regs = [new_registration(conn, customer_phone=f"+1555124{i:04d}", notification_pref="sms",
                             time_zone="UTC") for i in range(150)]
    for reg in regs:
        change_stage(conn, reg, "dmv_processing")
    set_quiet_window(conn, "UTC", -3600, 5)
    make_due(conn)
    run_tick()
    count = conn.execute("SELECT count(*) AS n, max(held_until) AS until "
                         "FROM registration_notifications WHERE hold_reason IS NOT NULL"
                         ).fetchone()
    assert count["n"] == 150 and twilio_wire.accepted_count() == 0

    wait_until(conn, count["until"])
    result = run_tick()
    assert result["released"] == 150
    assert twilio_wire.accepted_count() == 150 and not twilio_wire.duplicates()
    assert conn.execute("SELECT count(*) AS n FROM registration_notifications "
                        "WHERE status = 'sent'").fetchone()["n"] == 150
    assert db_now(conn) >= count["until"]
