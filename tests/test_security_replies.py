"""Replies that hold: a replayed STOP after pruning, and a flood of texts to staff."""

from __future__ import annotations

import pytest

from tests.flow import run_tick
from tests.pg import new_registration
from tests.relay_helpers import twilio_post

pytest_plugins = ["tests.relay_helpers"]
pytestmark = pytest.mark.usefixtures("pipeline")

INBOUND = "/webhooks/twilio/inbound"
DANA = "+15557650001"
STAFF = "desk@security.test"


def _text(body: str, phone: str, sid: str) -> dict[str, str]:
    return {"MessageSid": sid, "AccountSid": "AC0123456789abcdef0123456789abcdef",
            "From": phone, "To": "+15005550006", "Body": body, "NumMedia": "0"}


def _opted_out(conn, phone: str) -> bool | None:
    row = conn.execute("SELECT opted_out FROM sms_opt_outs WHERE phone = %s",
                       (phone,)).fetchone()
    return None if row is None else bool(row["opted_out"])


# ── 7a. a captured STOP replayed after retention pruned it ──────────────────


def test_a_replayed_stop_after_pruning_changes_nothing(relay_client, conn):
    new_registration(conn, customer_phone=DANA)
    client = relay_client()
    stop = _text("STOP", DANA, "SMstop" + "0" * 26)
    assert twilio_post(client, INBOUND, stop).status_code == 200
    assert _opted_out(conn, DANA) is True
    assert twilio_post(client, INBOUND, _text("START", DANA, "SMstart" + "0" * 25)
                       ).status_code == 200
    assert _opted_out(conn, DANA) is False
    # A year later retention prunes both texts.
    conn.execute("UPDATE inbound_messages SET received_at = now() - interval '400 days'")
    conn.execute("UPDATE notification_config SET retain_deliveries = interval '1 year'")
    try:
        conn.execute("SELECT * FROM prune_notifications(100)")
    finally:
        conn.execute("UPDATE notification_config SET retain_deliveries = NULL")
    assert conn.execute("SELECT count(*) AS n FROM inbound_messages").fetchone()["n"] == 0
    # Whoever captured the signed STOP sends it again.
    replay = twilio_post(client, INBOUND, stop)
    assert replay.status_code == 200 and replay.text == "<Response/>"
    assert _opted_out(conn, DANA) is False
    assert conn.execute("SELECT count(*) AS n FROM inbound_messages").fetchone()["n"] == 0
    # A new text is still a new text.
    assert twilio_post(client, INBOUND, _text("STOP", DANA, "SMstop" + "1" * 26)
                       ).status_code == 200
    assert _opted_out(conn, DANA) is True


# ── 7b. a flood of texts from many numbers: the cap, then one summary ───────


def test_500_replies_from_500_numbers_are_at_most_the_cap_plus_one_summary(
        relay_client, conn, resend_wire):
    cap = 10
    conn.execute("UPDATE notification_config SET staff_email = %s", (STAFF,))
    # (Guarded so that, on a database without the setting, the test fails on
    # what reaches staff rather than on the missing column.)
    conn.execute("DO $$ BEGIN UPDATE notification_config SET staff_digest_hourly_cap = 10; "
                 "EXCEPTION WHEN undefined_column THEN NULL; END $$")
    try:
        client = relay_client()
        numbers = [f"+1555766{i:04d}" for i in range(500)]
        for i, phone in enumerate(numbers):
            answer = twilio_post(client, INBOUND, _text(f"question {i}", phone, f"SMflood{i:025d}"))
            assert answer.status_code == 200
        conn.execute("UPDATE reply_digests SET send_after = now() - interval '1 second'")
        run_tick()
        run_tick()  # a second run within the hour sends nothing more
        mails = [s for s in resend_wire.sends() if s.to == STAFF]
        assert len(mails) <= cap + 1
        summaries = [m for m in mails if "more customer texts" in m.subject]
        assert len(summaries) == 1 and len(mails) == cap + 1
        # Nothing dropped: every text reached staff, once.
        everything = "\n".join(m.text for m in mails)
        for i in range(500):
            assert f"question {i}\n" in everything + "\n", i
        states = conn.execute("SELECT status, count(*) AS n FROM reply_digests "
                              "GROUP BY status").fetchall()
        assert states == [{"status": "sent", "n": 500}]
        # More texts within the hour wait for the next summary: no e-mail now.
        twilio_post(client, INBOUND, _text("one more", numbers[0], "SMflood" + "9" * 25))
        conn.execute("UPDATE reply_digests SET send_after = now() - interval '1 second' "
                     "WHERE status = 'pending'")
        run_tick()
        assert len([s for s in resend_wire.sends() if s.to == STAFF]) == cap + 1
        (waiting,) = conn.execute("SELECT status, send_after > now() + interval '50 minutes' "
                                  "AS later FROM reply_digests WHERE status = 'pending'"
                                  ).fetchall()
        assert waiting["later"] is True
    finally:
        conn.execute("DO $$ BEGIN UPDATE notification_config SET staff_digest_hourly_cap = "
                     "DEFAULT; EXCEPTION WHEN undefined_column THEN NULL; END $$")
