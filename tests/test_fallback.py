"""The other channel when one fails for good: Twilio errors, signed status callbacks and
Resend bounces through the relay, eager Celery, the Twilio and Resend wires."""

from __future__ import annotations

import pytest

from tests.cli_runner import cli
from tests.flow import by_channel, change_stage, deliveries, make_due, run_tick
from tests.pg import new_registration
from tests.quiet_helpers import held, set_quiet_window
from tests.relay_helpers import resend_event, resend_post, twilio_post

pytestmark = pytest.mark.usefixtures("pipeline")
pytest_plugins = ["tests.relay_helpers"]

PHONE = "+15551238001"
EMAIL = "fran@example.com"
STATUS = "/webhooks/twilio/status"
INBOUND = "/webhooks/twilio/inbound"
PERMANENT_BOUNCE = {"message": "550 5.1.1 mailbox does not exist", "subType": "General",
                    "type": "Permanent"}


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


def _notify(conn, **fields) -> str:
    values = {"customer_phone": PHONE, "customer_email": EMAIL, **fields}
    reg = new_registration(conn, **values)
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    run_tick()
    return reg


def _callback(client, sid: str, status: str, code: str | None = None):
    params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
              "AccountSid": "AC0123456789abcdef0123456789abcdef", "To": PHONE}
    if code:
        params["ErrorCode"] = code
    response = twilio_post(client, STATUS, params)
    assert response.status_code == 200
    return response.json()["result"]


# ── Text -> e-mail ───────────────────────────────────────────────────────────


@pytest.mark.parametrize(("phone", "code"), [("+15005550001", "21211"),
                                             ("+15005550009", "21614")])
def test_a_permanent_twilio_error_gives_exactly_one_email(conn, twilio_wire, resend_wire,
                                                          phone, code):
    reg = _notify(conn, customer_phone=phone, notification_pref="sms")
    rows = by_channel(deliveries(conn, reg))
    assert (rows["sms"]["status"], rows["sms"]["error_code"]) == ("failed", code)
    assert rows["email"]["status"] == "sent"
    assert rows["email"]["fallback_for"] == rows["sms"]["id"]
    assert resend_wire.accepted_count(EMAIL) == 1
    # A re-run finds nothing more to do.
    run_tick()
    assert resend_wire.accepted_count() == 1


def test_21610_gives_no_email(conn, resend_wire):
    reg = _notify(conn, customer_phone="+15005550004", notification_pref="sms")
    rows = by_channel(deliveries(conn, reg))
    assert rows["sms"]["error_code"] == "21610"
    assert (rows["email"]["status"], rows["email"]["skip_reason"]) == ("skipped", "preference")
    assert resend_wire.accepted_count() == 0


def test_an_undelivered_callback_gives_one_email_and_a_duplicate_none(
    conn, relay_client, twilio_wire, resend_wire, capsys
):
    reg = _notify(conn, notification_pref="sms")
    sms = by_channel(deliveries(conn, reg))["sms"]
    assert sms["status"] == "sent" and resend_wire.accepted_count() == 0
    client = relay_client()
    assert _callback(client, sms["provider_message_id"], "undelivered", "30006") == "moved"
    assert resend_wire.accepted_count(EMAIL) == 1
    # Twilio retries the callback, and a late 'failed' arrives out of order.
    assert _callback(client, sms["provider_message_id"], "undelivered", "30006") == "unchanged"
    assert _callback(client, sms["provider_message_id"], "failed", "30007") == "unchanged"
    assert _callback(client, sms["provider_message_id"], "sent") == "unchanged"
    assert resend_wire.accepted_count() == 1
    email = by_channel(deliveries(conn, reg))["email"]
    assert email["status"] == "sent" and email["fallback_for"] == sms["id"]

    code, out, _ = cli(capsys, "status", reg)
    assert code == 0
    assert "e-mailed because the text could not be delivered (30006)" in out
    assert f"the e-mail went instead (delivery {email['id']})" in out


def test_no_email_when_already_emailed_preference_none_stop_or_fallback_off(
    conn, relay_client, resend_wire
):
    client = relay_client()
    # 'both': the customer already got the e-mail of this change.
    both = _notify(conn, notification_pref="both")
    assert resend_wire.accepted_count() == 1
    sid = by_channel(deliveries(conn, both))["sms"]["provider_message_id"]
    assert _callback(client, sid, "undelivered", "30003") == "moved"
    assert resend_wire.accepted_count() == 1

    # Preference changed to 'none' after the text went.
    none = _notify(conn, customer_phone="+15551238002", notification_pref="sms")
    conn.execute("UPDATE registrations SET notification_pref = 'none' WHERE id = %s", (none,))
    sid = by_channel(deliveries(conn, none))["sms"]["provider_message_id"]
    assert _callback(client, sid, "undelivered", "30005") == "moved"

    # The customer texted STOP after the text went.
    stop = _notify(conn, customer_phone="+15551238003", notification_pref="sms")
    assert twilio_post(client, INBOUND, {"From": "+15551238003", "Body": "STOP"}
                       ).status_code == 200
    sid = by_channel(deliveries(conn, stop))["sms"]["provider_message_id"]
    assert _callback(client, sid, "undelivered", "30007") == "moved"

    # fallback_enabled off.
    conn.execute("UPDATE notification_config SET fallback_enabled = false")
    off = _notify(conn, customer_phone="+15551238004", notification_pref="sms")
    sid = by_channel(deliveries(conn, off))["sms"]["provider_message_id"]
    assert _callback(client, sid, "failed", "30006") == "moved"

    # No address: nothing to fall back to.
    conn.execute("UPDATE notification_config SET fallback_enabled = true")
    bare = _notify(conn, customer_phone="+15551238005", customer_email=None,
                   notification_pref="sms")
    sid = by_channel(deliveries(conn, bare))["sms"]["provider_message_id"]
    assert _callback(client, sid, "undelivered", "30006") == "moved"

    assert resend_wire.accepted_count() == 1
    assert conn.execute("SELECT count(*) AS n FROM registration_notifications "
                        "WHERE fallback_for IS NOT NULL").fetchone()["n"] == 0


# ── E-mail -> text ───────────────────────────────────────────────────────────


def test_a_hard_bounce_gives_one_text(conn, relay_client, twilio_wire, capsys):
    reg = _notify(conn, notification_pref="email")
    email = by_channel(deliveries(conn, reg))["email"]
    assert twilio_wire.accepted_count() == 0
    client = relay_client()
    event = resend_event("email.bounced", email["provider_message_id"], bounce=PERMANENT_BOUNCE)
    assert resend_post(client, event, "msg_bounce_1").json() == {"result": "moved"}
    # Svix redelivers the same event, and Resend sends a second bounce event.
    assert resend_post(client, event, "msg_bounce_1").json() == {"result": "duplicate"}
    assert resend_post(client, event, "msg_bounce_2").json() == {"result": "unchanged"}
    [text] = twilio_wire.sends(PHONE)
    assert "plates and sticker" in text.body
    sms = by_channel(deliveries(conn, reg))["sms"]
    assert sms["status"] == "sent" and sms["fallback_for"] == email["id"]

    code, out, _ = cli(capsys, "status", reg)
    assert code == 0
    assert "texted because the e-mail bounced (bounce:Permanent/General)" in out


def test_no_text_after_a_bounce_when_the_number_opted_out_or_the_bounce_is_transient(
    conn, relay_client, twilio_wire
):
    client = relay_client()
    conn.execute("INSERT INTO sms_opt_outs (phone, source) VALUES (%s, 'inbound:STOP')",
                 (PHONE,))
    reg = _notify(conn, notification_pref="email")
    email = by_channel(deliveries(conn, reg))["email"]
    resend_post(client, resend_event("email.bounced", email["provider_message_id"],
                                     bounce=PERMANENT_BOUNCE), "msg_b1")

    other = _notify(conn, customer_phone="+15551238010", customer_email="g@example.com",
                    notification_pref="email")
    email = by_channel(deliveries(conn, other))["email"]
    soft = {**PERMANENT_BOUNCE, "type": "Transient", "subType": "MailboxFull"}
    resend_post(client, resend_event("email.bounced", email["provider_message_id"],
                                     bounce=soft), "msg_b2")
    assert twilio_wire.accepted_count() == 0


def test_a_fallback_inside_quiet_hours_is_held(conn, relay_client, twilio_wire):
    reg = _notify(conn, notification_pref="email")
    email = by_channel(deliveries(conn, reg))["email"]
    set_quiet_window(conn, "America/Chicago", -3600, 3600)
    resend_post(relay_client(), resend_event("email.bounced", email["provider_message_id"],
                                             bounce=PERMANENT_BOUNCE), "msg_q")
    [sms] = held(conn, reg)
    assert sms["fallback_for"] == email["id"] and sms["status"] == "queued"
    assert twilio_wire.accepted_count() == 0


def test_the_decision_is_idempotent_in_sql(conn, clean_db):
    from db.fallback import fallback_for_failed
    from tasks.database import engine

    reg = new_registration(conn, customer_phone=PHONE, customer_email=EMAIL,
                           notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    conn.execute("UPDATE notification_config SET quiet_hours_channels = '{sms,email}', "
                 "quiet_hours_start = '00:00', quiet_hours_end = '23:59:59.999'")
    run_tick()  # both held: nothing goes out
    sms = by_channel(deliveries(conn, reg))["sms"]
    conn.execute("UPDATE registration_notifications SET status = 'undelivered', "
                 "error_code = '30006', hold_reason = NULL WHERE id = %s", (sms["id"],))
    with engine().begin() as c:
        first = fallback_for_failed(c, sms["id"])
        second = fallback_for_failed(c, sms["id"])
    assert first is not None and first.ref.channel == "email" and second is None


def test_two_racing_callbacks_queue_one_fallback(conn):
    import threading
    import time

    from db.fallback import fallback_for_failed
    from tasks.database import engine

    reg = _notify(conn, notification_pref="sms")
    sms = by_channel(deliveries(conn, reg))["sms"]
    conn.execute("UPDATE registration_notifications SET status = 'undelivered', "
                 "error_code = '30006' WHERE id = %s", (sms["id"],))
    conn.execute("UPDATE notification_config SET quiet_hours_channels = '{email}', "
                 "quiet_hours_start = '00:00', quiet_hours_end = '23:59:59.999'")  # hold it
    results: list[object] = []
    first_in = threading.Event()

    def slow() -> None:
        with engine().begin() as c:
            results.append(fallback_for_failed(c, sms["id"]))
            first_in.set()
            time.sleep(0.5)  # the other transaction waits on the row lock meanwhile

    def fast() -> None:
        first_in.wait(5)
        with engine().begin() as c:
            results.append(fallback_for_failed(c, sms["id"]))

    threads = [threading.Thread(target=slow), threading.Thread(target=fast)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 2 and sum(r is not None for r in results) == 1
    assert conn.execute("SELECT count(*) AS n FROM registration_notifications "
                        "WHERE fallback_for = %s", (sms["id"],)).fetchone()["n"] == 1
