"""`regnotify status` and `regnotify status REG_ID` over deliveries that really happened.

Deliveries go through the real pipeline (eager Celery, the real Twilio and
Resend SDKs against the wire fakes); the command is run through the CLI entry
point and both its table output and its `--json` document are checked.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.cli_runner import cli
from tests.flow import by_channel, change_stage, deliveries, make_due, run_tick
from tests.pg import new_registration

pytestmark = pytest.mark.usefixtures("pipeline")

BAD_NUMBER = "+15005550001"  # Twilio magic number: always error 21211


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rich sizes tables to COLUMNS when stdout is not a terminal; wide enough
    # that ids and error messages are not folded across lines.
    monkeypatch.setenv("COLUMNS", "250")


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """Run with --json and parse the one document it prints."""
    code, out, err = cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def notify(conn, **fields: Any) -> str:
    """A registration moved once and processed: its deliveries are final."""
    reg = new_registration(conn, **fields)
    change_stage(conn, reg, "documents_collected")
    make_due(conn)
    run_tick()
    return reg


# ── Overview ─────────────────────────────────────────────────────────────────


def test_overview_of_an_idle_system(conn, capsys):
    doc = cli_json(capsys, "status")
    assert doc["queue"] == {"pending": 0, "due_now": 0, "oldest_due_age_s": None,
                            "next_due_in_s": None}
    assert doc["deliveries_last_24h"]["total"] == 0
    assert doc["deliveries_last_24h"]["by_channel"] == {"sms": {}, "email": {}}
    assert doc["failed"] == [] and doc["waiting_for_retry"] == []

    code, out, _ = cli(capsys, "status")
    assert code == 0
    assert "Queue" in out and "pending" in out
    assert "Failed deliveries: none" in out and "Waiting for a retry: none" in out


def test_overview_counts_queue_deliveries_failures_and_retries(conn, capsys, twilio_wire):
    from db import deliveries as db_deliveries
    from db.queue import claim_due
    from tasks.database import engine

    # No e-mail address: the failed text has no fallback (tests/test_fallback.py).
    failed_reg = notify(conn, customer_name="Fay Failing", customer_phone=BAD_NUMBER,
                        notification_pref="sms", customer_email=None)
    notify(conn, customer_name="Nora None", customer_phone="+15551230011",
           notification_pref="none")
    notify(conn, customer_name="Sam Sent", customer_phone="+15551230012")

    # A delivery that hit a transient error and waits for its next attempt,
    # recorded through the same data access the send task uses.
    retry_reg = new_registration(conn, customer_name="Rita Retry",
                                 customer_phone="+15551230013", notification_pref="email")
    change_stage(conn, retry_reg, "documents_collected")
    make_due(conn)
    with engine().begin() as c:
        [waiting_ref] = [r for r in claim_due(c, 10).deliveries if r.channel == "email"]
        # The claim checks the address it is given against the registration's.
        claimed = db_deliveries.claim(c, waiting_ref.id, lease_s=30, recipient="dana@example.com",
                                      provider="resend", body="b", subject="s",
                                      template_used="t", language="en")
        assert isinstance(claimed, db_deliveries.Claim), claimed
        db_deliveries.schedule_retry(c, waiting_ref.id, countdown_s=300, outcome_unknown=False,
                                     code="http_503", message="Service Unavailable")

    # One burst not due yet, one due for 90 s that no tick has claimed.
    change_stage(conn, new_registration(conn, customer_phone="+15551230014"), "sticker_ready")
    due_reg = new_registration(conn, customer_phone="+15551230015")
    change_stage(conn, due_reg, "sticker_ready")
    conn.execute("UPDATE notification_queue SET send_after = now() - interval '90 seconds' "
                 "WHERE registration_id = %s", (due_reg,))

    doc = cli_json(capsys, "status")
    queue = doc["queue"]
    assert (queue["pending"], queue["due_now"]) == (2, 1)
    assert 89 <= queue["oldest_due_age_s"] < 150
    assert 0 < queue["next_due_in_s"] <= 300

    counts = doc["deliveries_last_24h"]["by_channel"]
    assert counts["sms"] == {"failed": 1, "skipped": 2, "sent": 1}
    assert counts["email"] == {"skipped": 2, "sent": 1, "sending": 1}
    assert doc["deliveries_last_24h"]["total"] == 8

    [failed] = doc["failed"]
    assert failed["registration_id"] == failed_reg
    assert (failed["channel"], failed["error_code"], failed["attempts"]) == ("sms", "21211", 1)
    assert failed["customer_name"] == "Fay Failing" and failed["error_message"]
    assert failed["recipient"] == "+*******0001"

    [waiting] = doc["waiting_for_retry"]
    assert waiting["id"] == waiting_ref.id and waiting["registration_id"] == retry_reg
    assert (waiting["status"], waiting["error_code"], waiting["attempts"]) == (
        "sending", "http_503", 1)
    assert waiting["next_attempt_at"] > doc["generated_at"]

    code, out, _ = cli(capsys, "status")
    assert code == 0
    assert "Deliveries, last 24 h" in out
    for word in ("failed", "skipped", "sent", "sending", "21211", "Fay Failing", failed_reg,
                 "Waiting for a retry", "Rita Retry", "http_503", "1m 3"):
        assert word in out, word
    assert BAD_NUMBER not in out


def test_overview_limit_caps_the_failed_list(conn, capsys):
    for i in range(3):
        notify(conn, customer_phone=BAD_NUMBER, notification_pref="sms",
               customer_name=f"Customer {i}")
    doc = cli_json(capsys, "status", "--limit", "2")
    assert len(doc["failed"]) == 2
    assert [f["customer_name"] for f in doc["failed"]] == ["Customer 2", "Customer 1"]


# ── Timeline of one registration ─────────────────────────────────────────────


def test_timeline_shows_a_merged_burst_and_a_skipped_channel(conn, capsys, twilio_wire):
    reg = new_registration(conn, customer_name="Dana Driver", customer_phone="+15551234567",
                           customer_email="dana@example.com", notification_pref="sms")
    for stage in ("documents_collected", "submitted_to_dmv", "dmv_processing"):
        change_stage(conn, reg, stage)
    make_due(conn)
    run_tick()
    [sms] = twilio_wire.sends()

    doc = cli_json(capsys, "status", reg)
    r = doc["registration"]
    # Masked like the phone: enough to recognise, not to write to.
    assert (r["id"], r["customer_name"], r["customer_email"]) == (
        reg, "Dana Driver", "d***@example.com")
    assert r["customer_phone"] == "+*******4567"
    assert r["current_stage"] == "dmv_processing"

    [burst] = doc["queue"]
    assert (burst["old_stage"], burst["new_stage"], burst["change_count"]) == (
        "sale_complete", "dmv_processing", 3)
    assert burst["closed_reason"] == "processed" and burst["processed_at"]
    assert burst["pending"] is False
    rows = {d["channel"]: d for d in burst["deliveries"]}
    assert rows["sms"]["status"] == "sent"
    assert rows["sms"]["provider"] == "twilio"
    assert rows["sms"]["provider_message_id"] == sms.id
    assert rows["sms"]["recipient"] == "+*******4567"
    assert (rows["sms"]["attempts"], rows["sms"]["sent_at"] is not None) == (1, True)
    assert (rows["email"]["status"], rows["email"]["skip_reason"]) == ("skipped", "preference")
    assert rows["email"]["provider_message_id"] is None
    assert doc["other_deliveries"] == []

    code, out, _ = cli(capsys, "status", reg)
    assert code == 0
    for word in ("Dana Driver", "d***@example.com", "+*******4567",
                 "sale_complete -> dmv_processing", "3 changes merged into one message",
                 "processed", "sent", sms.id, "twilio",
                 "skipped", "preference: not a channel the customer chose"):
        assert word in out, word
    # Only the last four digits of the phone, anywhere.
    assert "+15551234567" not in out and "5551234" not in json.dumps(doc)


def test_timeline_of_several_bursts_silenced_flip_and_pending(conn, capsys, twilio_wire,
                                                              resend_wire):
    reg = new_registration(conn, customer_phone="+15551230021", notification_pref="both")
    # 1: silenced by staff.
    change_stage(conn, reg, "documents_collected", silence=True)
    make_due(conn)
    run_tick()
    # 2: A -> B -> A, nothing to say.
    change_stage(conn, reg, "submitted_to_dmv")
    change_stage(conn, reg, "documents_collected")
    make_due(conn)
    run_tick()
    # 3: still debouncing.
    change_stage(conn, reg, "sticker_ready")

    doc = cli_json(capsys, "status", reg)
    bursts = doc["queue"]
    assert [b["closed_reason"] for b in bursts] == ["silenced", "no_net_change", None]
    assert [b["change_count"] for b in bursts] == [1, 2, 1]
    assert [b["pending"] for b in bursts] == [False, False, True]
    assert {(d["status"], d["skip_reason"]) for d in bursts[0]["deliveries"]} == {
        ("skipped", "silenced")}
    assert {(d["status"], d["skip_reason"]) for d in bursts[1]["deliveries"]} == {
        ("skipped", "no_net_change")}
    assert bursts[2]["deliveries"] == []
    assert twilio_wire.accepted_count() == resend_wire.accepted_count() == 0

    code, out, _ = cli(capsys, "status", reg)
    assert code == 0
    for word in ("closed: silenced by staff", "staff silenced this change",
                 "documents_collected -> documents_collected", "2 changes merged",
                 "closed: ended where it began", "pending: due"):
        assert word in out, word
    assert re.search(r"pending: due .* \(in [45]m \d\ds\)", out)


def test_timeline_shows_the_provider_error_of_a_failed_delivery(conn, capsys):
    reg = notify(conn, customer_phone=BAD_NUMBER, notification_pref="both")
    doc = cli_json(capsys, "status", reg)
    rows = {d["channel"]: d for d in doc["queue"][0]["deliveries"]}
    assert (rows["sms"]["status"], rows["sms"]["error_code"]) == ("failed", "21211")
    assert rows["sms"]["error_message"] and "5550001" not in rows["sms"]["error_message"][:-4]
    assert rows["email"]["status"] == "sent"
    db_row = by_channel(deliveries(conn, reg))["sms"]
    assert rows["sms"]["id"] == db_row["id"] and rows["sms"]["attempts"] == db_row["attempts"]

    code, out, _ = cli(capsys, "status", reg)
    assert code == 0
    assert "failed" in out and "21211" in out
    assert BAD_NUMBER not in out


def test_timeline_of_a_registration_with_no_changes(conn, capsys):
    reg = new_registration(conn, customer_phone=None, customer_email=None)
    doc = cli_json(capsys, "status", reg)
    assert doc["queue"] == [] and doc["registration"]["customer_phone"] is None
    code, out, _ = cli(capsys, "status", reg)
    assert code == 0 and "No stage changes yet." in out


def test_manual_send_appears_as_its_own_entry(conn, capsys, twilio_wire):
    reg = new_registration(conn, notification_pref="sms", current_stage="sticker_ready")
    assert cli(capsys, "send", reg, "--inline")[0] == 0
    doc = cli_json(capsys, "status", reg)
    [burst] = doc["queue"]
    assert (burst["old_stage"], burst["closed_reason"]) == (None, "manual")
    code, out, _ = cli(capsys, "status", reg)
    assert code == 0
    assert "manual send: sticker_ready" in out and "· ->" not in out


@pytest.mark.parametrize(
    ("reg_id", "message"),
    [("not-a-uuid", "not a registration id (a uuid): 'not-a-uuid'"),
     ("00000000-0000-0000-0000-000000000000",
      "no registration 00000000-0000-0000-0000-000000000000")],
)
def test_bad_registration_id_is_a_one_line_error(conn, capsys, reg_id, message):
    for argv in (("status", reg_id), ("status", reg_id, "--json")):
        code, out, err = cli(capsys, *argv)
        assert code == 2 and out == ""
        assert err.strip() == f"regnotify status: {message}"
        assert "Traceback" not in err


def test_unreachable_database_is_a_one_line_error(conn, capsys):
    from tasks.local.embedded_postgres import free_port

    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    code, out, err = cli(capsys, "status", "--database-url", url)
    assert code == 2 and out == ""
    assert err.startswith("regnotify status: database postgresql://nobody@127.0.0.1:")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("columns", ["60", "80", "120", "250"])
def test_ids_are_never_cut_on_any_terminal_width(conn, capsys, twilio_wire, resend_wire,
                                                 monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    reg = notify(conn, customer_phone="+15551230031",
                 customer_email="a.rather.long.address@example.com")
    failed_reg = notify(conn, customer_phone=BAD_NUMBER, notification_pref="sms",
                        customer_email=None)
    [sms] = twilio_wire.sends()
    [email] = resend_wire.sends()

    code, out, _ = cli(capsys, "status", reg)
    assert code == 0
    assert sms.id in out and email.id in out and reg in out
    code, out, _ = cli(capsys, "status")
    assert code == 0
    assert failed_reg in out and "…" not in out
    code, out, _ = cli(capsys, "retry-failed", "--dry-run")
    assert code == 0
    assert failed_reg in out and "…" not in out


def test_masking_helpers():
    from tasks.masking import mask_phone, mask_text

    assert mask_phone("+15551230001") == "+*******0001"
    assert mask_phone(None) is None
    assert mask_text("The 'To' number +15005550001 is not valid; see error 21211") == (
        "The 'To' number +*******0001 is not valid; see error 21211")
    # A message SID is not a phone number.
    assert mask_text("SM1234567890abcdef") == "SM1234567890abcdef"
