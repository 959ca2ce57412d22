"""`regnotify retry-failed`: failed deliveries re-driven through the real send tasks.

A delivery is made to fail for real (a scripted permanent Twilio error on an
ordinary number, or Resend rejecting an address), then re-driven; the wire
ledgers prove what the providers received.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tasks.exceptions import CommandError
from tests.cli_runner import cli
from tests.flow import by_channel, change_stage, deliveries, make_due, run_tick
from tests.pg import new_registration

PHONE = "+15551238001"
EMAIL = "rory@example.com"


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


def retry_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = cli(capsys, "retry-failed", *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def failed_sms(conn, twilio_wire, phone: str = PHONE, **fields: Any) -> tuple[str, dict]:
    """A registration whose text failed permanently once (21211 scripted on a good number)."""
    twilio_wire.script(phone, ["21211"])
    reg = new_registration(conn, customer_phone=phone, notification_pref="sms", **fields)
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    run_tick()
    row = by_channel(deliveries(conn, reg))["sms"]
    assert (row["status"], row["error_code"]) == ("failed", "21211")
    return reg, row


@pytest.mark.usefixtures("pipeline")
def test_failed_text_is_sent_once_on_redrive(conn, capsys, twilio_wire):
    reg, row = failed_sms(conn, twilio_wire)
    assert twilio_wire.accepted_count(PHONE) == 0

    doc = retry_json(capsys)
    assert (doc["matched"], doc["requeued"], doc["dispatched"], doc["dry_run"]) == (1, 1, 1, False)
    [entry] = doc["deliveries"]
    assert (entry["id"], entry["registration_id"], entry["channel"]) == (row["id"], reg, "sms")
    assert (entry["error_code"], entry["requeued"]) == ("21211", True)
    assert entry["recipient"] == "+*******8001"

    [sent] = twilio_wire.sends(PHONE)
    assert twilio_wire.accepted_count(PHONE) == 1
    after = by_channel(deliveries(conn, reg))["sms"]
    assert (after["status"], after["provider_message_id"]) == ("sent", sent.id)
    # The failed attempt stays counted: the history is kept across a re-drive.
    assert after["error_code"] is None and after["attempts"] == 2

    # Nothing failed is left: a second run re-drives nothing and sends nothing.
    again = retry_json(capsys)
    assert (again["matched"], again["requeued"]) == (0, 0)
    assert twilio_wire.accepted_count(PHONE) == 1


@pytest.mark.usefixtures("pipeline")
def test_failed_email_is_redriven_through_resend(conn, capsys, resend_wire):
    resend_wire.script(EMAIL, ["validation_error"])
    reg = new_registration(conn, customer_email=EMAIL, customer_phone=None,
                           notification_pref="email")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    run_tick()
    assert by_channel(deliveries(conn, reg))["email"]["status"] == "failed"

    code, out, err = cli(capsys, "retry-failed", "--channel", "email")
    assert code == 0, err
    assert "Retrying 1 failed delivery" in out and "validation_error" in out
    assert "r***@example.com" in out
    assert EMAIL not in out  # masked like a phone number
    assert resend_wire.accepted_count(EMAIL) == 1
    assert by_channel(deliveries(conn, reg))["email"]["status"] == "sent"


@pytest.mark.usefixtures("pipeline")
def test_dry_run_lists_and_changes_nothing(conn, capsys, twilio_wire):
    reg, row = failed_sms(conn, twilio_wire, customer_name="Drew Dry")
    attempts_before = len(twilio_wire.attempts())

    doc = retry_json(capsys, "--dry-run")
    assert (doc["dry_run"], doc["matched"], doc["requeued"], doc["dispatched"]) == (
        True, 1, 0, 0)
    assert doc["deliveries"][0]["requeued"] is False

    code, out, _ = cli(capsys, "retry-failed", "--dry-run")
    assert code == 0
    assert "Would retry 1 failed delivery" in out and "dry run, nothing changed" in out
    for word in (reg, "Drew Dry", "21211", "+*******8001"):
        assert word in out, word
    assert PHONE not in out

    assert len(twilio_wire.attempts()) == attempts_before
    after = by_channel(deliveries(conn, reg))["sms"]
    assert (after["status"], after["error_code"], after["updated_at"]) == (
        "failed", "21211", row["updated_at"])


@pytest.mark.usefixtures("pipeline")
def test_filters_by_channel_registration_and_since(conn, capsys, twilio_wire, resend_wire):
    sms_reg, _ = failed_sms(conn, twilio_wire)
    other_reg, other_row = failed_sms(conn, twilio_wire, phone="+15551238002")
    resend_wire.script(EMAIL, ["validation_error"])
    email_reg = new_registration(conn, customer_email=EMAIL, customer_phone=None,
                                 notification_pref="email")
    change_stage(conn, email_reg, "sticker_ready")
    make_due(conn)
    run_tick()
    # The other text failed three days ago.
    conn.execute("UPDATE registration_notifications SET updated_at = now() - interval '3 days' "
                 "WHERE id = %s", (other_row["id"],))

    def matched(*argv: str) -> set[str]:
        doc = retry_json(capsys, "--dry-run", *argv)
        return {d["registration_id"] for d in doc["deliveries"]}

    assert matched() == {sms_reg, email_reg}
    assert matched("--channel", "sms") == {sms_reg}
    assert matched("--channel", "email") == {email_reg}
    assert matched("--registration", other_reg) == set()
    assert matched("--registration", other_reg, "--since", "4d") == {other_reg}
    assert matched("--since", "7d") == {sms_reg, other_reg, email_reg}
    assert matched("--since", "90m") == {sms_reg, email_reg}
    four_days_ago = (datetime.now(UTC) - timedelta(days=4)).isoformat()
    assert matched("--since", four_days_ago, "--channel", "sms") == {sms_reg, other_reg}

    # Re-drive only the old one: the others stay failed and untouched.
    doc = retry_json(capsys, "--since", "7d", "--registration", other_reg)
    assert doc["requeued"] == 1
    assert twilio_wire.accepted_count("+15551238002") == 1
    assert twilio_wire.accepted_count(PHONE) == 0
    assert by_channel(deliveries(conn, sms_reg))["sms"]["status"] == "failed"
    assert by_channel(deliveries(conn, email_reg))["email"]["status"] == "failed"


@pytest.mark.usefixtures("pipeline")
def test_still_failing_delivery_fails_again_with_the_new_error(conn, capsys, twilio_wire):
    reg, _ = failed_sms(conn, twilio_wire)
    twilio_wire.script(PHONE, ["21612"])
    doc = retry_json(capsys)
    assert doc["requeued"] == 1
    row = by_channel(deliveries(conn, reg))["sms"]
    assert (row["status"], row["error_code"], row["attempts"]) == ("failed", "21612", 2)
    assert twilio_wire.accepted_count(PHONE) == 0


@pytest.mark.usefixtures("pipeline")
def test_nothing_to_retry(conn, capsys):
    code, out, _ = cli(capsys, "retry-failed", "--channel", "sms")
    assert code == 0
    assert "No failed deliveries to retry" in out and "channel sms" in out


@pytest.mark.usefixtures("pipeline")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "5x"], "--since takes a duration like 30m, 24h, 7d or an ISO time"),
        (["--since", "yesterday"], "--since takes a duration like 30m, 24h, 7d or an ISO time"),
        (["--since", "0h"], "--since must be more than zero"),
        (["--since", "2999-01-01T00:00:00Z"], "--since is in the future"),
        (["--registration", "nope"], "not a registration id (a uuid): 'nope'"),
        (["--registration", "00000000-0000-0000-0000-000000000000"],
         "no registration 00000000-0000-0000-0000-000000000000"),
    ],
)
def test_bad_arguments_are_one_line_errors(conn, capsys, argv, message):
    code, out, err = cli(capsys, "retry-failed", *argv)
    assert code == 2 and out == ""
    assert err.startswith(f"regnotify retry-failed: {message}")
    assert len(err.strip().splitlines()) == 1


def test_unknown_channel_is_refused_by_the_parser(capsys):
    from tasks.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["retry-failed", "--channel", "fax"])
    assert exc.value.code == 2
    assert "invalid choice: 'fax'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        (" 12H ", timedelta(hours=12)),
    ],
)
def test_parse_since_durations(value, expected):
    from tasks.cli.retry_failed import parse_since

    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_since(value, now) == now - expected


def test_parse_since_iso_times():
    from tasks.cli.retry_failed import parse_since

    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_since("2024-04-30T09:30:00Z", now) == datetime(2024, 4, 30, 9, 30, tzinfo=UTC)
    assert parse_since("2024-04-30T09:30:00+02:00", now) == datetime(2024, 4, 30, 7, 30,
                                                                     tzinfo=UTC)
    # No offset: the local time a person meant.
    local = parse_since("2024-04-30T09:30:00", now)
    assert local.tzinfo is not None
    assert local.replace(tzinfo=None) == datetime(2024, 4, 30, 9, 30)
    assert parse_since("2024-04-30", now).date().isoformat() == "2024-04-30"
    for bad in ("", "h", "-1h", "10 parsecs", "2024-13-01"):
        with pytest.raises(CommandError):
            parse_since(bad, now)


@pytest.mark.usefixtures("pipeline")
def test_redrive_after_a_maybe_sent_last_attempt_adopts_instead_of_resending(
    conn, capsys, twilio_wire
):
    # SEND_MAX_RETRIES=3: the 4th and last attempt is accepted by Twilio, but
    # its answer never comes, so the delivery fails with its outcome unknown.
    twilio_wire.script(PHONE, ["500", "500", "500", "timeout_after_accept:2"])
    reg = new_registration(conn, customer_phone=PHONE, notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    run_tick()
    row = by_channel(deliveries(conn, reg))["sms"]
    assert (row["status"], row["outcome_unknown"], row["attempts"]) == ("failed", True, 4)
    [accepted] = twilio_wire.sends(PHONE)

    doc = retry_json(capsys)
    assert doc["requeued"] == 1
    after = by_channel(deliveries(conn, reg))["sms"]
    assert (after["status"], after["provider_message_id"]) == ("sent", accepted.id)
    assert after["attempts"] == 5
    assert twilio_wire.accepted_count(PHONE) == 1


@pytest.mark.usefixtures("pipeline")
def test_redrive_gives_a_fresh_retry_budget_and_keeps_the_count(conn, capsys, twilio_wire):
    # SEND_MAX_RETRIES=3: four 5xx answers use up the whole budget.
    twilio_wire.script(PHONE, ["500", "500", "500", "500"])
    reg = new_registration(conn, customer_phone=PHONE, notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    run_tick()
    row = by_channel(deliveries(conn, reg))["sms"]
    assert (row["status"], row["attempts"]) == ("failed", 4)

    # Three more transient errors would exceed a budget counted from zero
    # attempts ago only if the old attempts still counted against it.
    twilio_wire.script(PHONE, ["503", "503", "503", "accept"])
    assert retry_json(capsys)["requeued"] == 1
    after = by_channel(deliveries(conn, reg))["sms"]
    assert (after["status"], after["attempts"]) == ("sent", 8)
    assert twilio_wire.accepted_count(PHONE) == 1
