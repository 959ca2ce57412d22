"""Twilio's signed webhooks against the real database: status callbacks and STOP/START."""

from __future__ import annotations

import itertools
import logging

import pytest
from twilio.request_validator import RequestValidator

from tests.pg import new_registration
from tests.relay_helpers import PUBLIC_URL, delivery, new_delivery, twilio_post

pytest_plugins = ["tests.relay_helpers"]

STATUS = "/webhooks/twilio/status"
INBOUND = "/webhooks/twilio/inbound"
SID = "SM0123456789abcdef0123456789abcdef"


def _status(sid: str = SID, status: str = "delivered", **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": "AC0123456789abcdef0123456789abcdef",
        "From": "+15005550006",
        "To": "+15551230001",
        "ApiVersion": "2010-04-01",
        **extra,
    }


# ── Signatures ───────────────────────────────────────────────────────────────


def test_a_signed_delivered_callback_moves_sent_to_delivered(relay_client, conn):
    row = new_delivery(conn, channel="sms", provider_message_id=SID)
    response = twilio_post(relay_client(), STATUS, _status())
    assert response.status_code == 200 and response.json() == {"result": "moved"}
    after = delivery(conn, row)
    assert after["status"] == "delivered" and after["delivered_at"] is not None
    assert after["error_code"] is None


@pytest.mark.parametrize(
    "forgery",
    ["missing", "wrong token", "other url", "tampered params", "garbage"],
)
def test_a_forged_or_missing_signature_is_403_and_changes_nothing(relay_client, conn, forgery):
    row = new_delivery(conn, channel="sms", provider_message_id=SID)
    client = relay_client()
    params = _status("SM" + "f" * 32 if forgery == "tampered params" else SID, "failed",
                     ErrorCode="30003")
    if forgery == "missing":
        response = client.post(STATUS, data=params)
    elif forgery == "wrong token":
        response = twilio_post(client, STATUS, params, token="not-the-auth-token")
    elif forgery == "other url":
        response = twilio_post(client, STATUS, params, public_url="https://evil.example")
    elif forgery == "tampered params":
        signature = RequestValidator("twilio-test-auth-token-abcdef").compute_signature(
            f"{PUBLIC_URL}{STATUS}", _status(SID, "failed", ErrorCode="30003"))
        params["MessageSid"] = SID
        params["ErrorCode"] = "30007"
        response = twilio_post(client, STATUS, params, signature=signature)
    else:
        response = twilio_post(client, STATUS, params, signature="bm90IGEgc2lnbmF0dXJl")
    assert response.status_code == 403
    assert delivery(conn, row)["status"] == "sent"


def test_the_signature_covers_the_query_string(relay_client, conn):
    row = new_delivery(conn, channel="sms", provider_message_id=SID)
    client = relay_client()
    ok = twilio_post(client, STATUS, _status(status="sent"), query="attempt=1")
    assert ok.status_code == 200
    # Signed without the query but sent with it: refused.
    params = _status()
    signature = RequestValidator("twilio-test-auth-token-abcdef").compute_signature(
        f"{PUBLIC_URL}{STATUS}", params)
    bad = client.post(f"{STATUS}?attempt=2", data=params,
                      headers={"X-Twilio-Signature": signature})
    assert bad.status_code == 403
    assert delivery(conn, row)["status"] == "sent"


def test_without_a_public_url_the_request_url_is_what_was_signed(relay_client, conn):
    row = new_delivery(conn, channel="sms", provider_message_id=SID)
    client = relay_client(relay_public_url=None)
    response = twilio_post(client, STATUS, _status(), public_url="http://testserver")
    assert response.status_code == 200
    assert delivery(conn, row)["status"] == "delivered"


def test_without_an_auth_token_every_callback_is_refused(relay_client, conn):
    row = new_delivery(conn, channel="sms", provider_message_id=SID)
    response = twilio_post(relay_client(twilio_auth_token=None), STATUS, _status())
    assert response.status_code == 403
    assert delivery(conn, row)["status"] == "sent"


# ── Forward only ─────────────────────────────────────────────────────────────


def test_statuses_only_move_forward_whatever_order_they_arrive_in(relay_client, conn):
    row = new_delivery(conn, channel="sms", provider_message_id=SID, status="sending")
    client = relay_client()
    outcomes = [twilio_post(client, STATUS, _status(status=s)).json()["result"]
                for s in ("queued", "sent", "accepted", "queued", "sending", "sent",
                          "delivered", "sent", "sending", "delivered")]
    assert outcomes == ["unchanged", "moved", "unchanged", "unchanged", "unchanged",
                        "unchanged", "moved", "unchanged", "unchanged", "unchanged"]
    assert delivery(conn, row)["status"] == "delivered"


def test_undelivered_is_final_and_keeps_the_error_code(relay_client, conn):
    row = new_delivery(conn, channel="sms", provider_message_id=SID)
    client = relay_client()
    first = twilio_post(client, STATUS, _status(status="undelivered", ErrorCode="30003"))
    assert first.json()["result"] == "moved"
    for late in ("delivered", "sent", "failed", "queued"):
        extra = {"ErrorCode": "30008"} if late == "failed" else {}
        assert twilio_post(client, STATUS, _status(status=late, **extra)).status_code == 200
    after = delivery(conn, row)
    assert after["status"] == "undelivered"
    assert after["error_code"] == "30003"
    assert "30003" in after["error_message"]
    assert after["delivered_at"] is None


def test_failed_is_final_even_after_delivered(relay_client, conn):
    row = new_delivery(conn, channel="sms", provider_message_id=SID)
    client = relay_client()
    twilio_post(client, STATUS, _status(status="delivered"))
    twilio_post(client, STATUS, _status(status="failed", ErrorCode="30007"))
    twilio_post(client, STATUS, _status(status="delivered"))
    after = delivery(conn, row)
    assert after["status"] == "failed" and after["error_code"] == "30007"


def test_duplicate_callbacks_are_harmless(relay_client, conn):
    row = new_delivery(conn, channel="sms", provider_message_id=SID)
    client = relay_client()
    results = [twilio_post(client, STATUS, _status()).json()["result"] for _ in range(3)]
    assert results == ["moved", "unchanged", "unchanged"]
    first = delivery(conn, row)
    twilio_post(client, STATUS, _status())
    assert delivery(conn, row)["delivered_at"] == first["delivered_at"]


def test_skipped_and_email_rows_are_never_touched(relay_client, conn):
    skipped = new_delivery(conn, channel="sms", provider_message_id=SID, status="skipped",
                           skip_reason="opted_out")
    email = new_delivery(conn, channel="email", provider_message_id="SMemail-same-id")
    client = relay_client()
    assert twilio_post(client, STATUS, _status()).json()["result"] == "unchanged"
    assert twilio_post(client, STATUS, _status("SMemail-same-id")).json()["result"] == "unknown"
    assert delivery(conn, skipped)["status"] == "skipped"
    assert delivery(conn, email)["status"] == "sent"


def test_an_unknown_message_sid_is_200_and_a_log_line(relay_client, conn, caplog):
    caplog.set_level(logging.INFO, logger="tasks.relay")
    response = twilio_post(relay_client(), STATUS, _status("SM" + "9" * 32))
    assert response.status_code == 200 and response.json() == {"result": "unknown"}
    assert "unknown message id SM999" in caplog.text


def test_statuses_we_do_not_track_are_200_and_ignored(relay_client, conn):
    row = new_delivery(conn, channel="sms", provider_message_id=SID)
    response = twilio_post(relay_client(), STATUS, _status(status="receiving"))
    assert response.json() == {"result": "ignored"}
    assert delivery(conn, row)["status"] == "sent"


# ── Inbound STOP / START ─────────────────────────────────────────────────────

PHONE = "+15557654321"


_SIDS = itertools.count(1)


def _inbound(body: str, phone: str = PHONE) -> dict[str, str]:
    # Each text its own MessageSid, as Twilio gives it (the same one is a retry).
    return {
        "MessageSid": f"SMinbound{next(_SIDS):025d}",
        "AccountSid": "AC0123456789abcdef0123456789abcdef",
        "From": phone,
        "To": "+15005550006",
        "Body": body,
        "NumMedia": "0",
    }


def _prefs(conn, *ids: str) -> list[str]:
    return [conn.execute("SELECT notification_pref FROM registrations WHERE id = %s",
                         (i,)).fetchone()["notification_pref"] for i in ids]


def _opt_out(conn, phone: str = PHONE) -> dict | None:
    return conn.execute("SELECT * FROM sms_opt_outs WHERE phone = %s", (phone,)).fetchone()


@pytest.mark.parametrize("keyword", ["STOP", " stop ", "StopAll", "UNSUBSCRIBE", "cancel",
                                     "END", "quit\n", "revoke", "OptOut"])
def test_stop_keywords_opt_out_and_leave_preferences_alone(relay_client, conn, keyword):
    both = new_registration(conn, customer_phone=PHONE, notification_pref="both")
    sms = new_registration(conn, customer_phone=PHONE, notification_pref="sms")
    email = new_registration(conn, customer_phone=PHONE, notification_pref="email")
    other = new_registration(conn, customer_phone="+15550000000", notification_pref="both")
    response = twilio_post(relay_client(), INBOUND, _inbound(keyword))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text == "<Response/>"
    # The opt-out is the number's row; each registration keeps its preference.
    assert _prefs(conn, both, sms, email, other) == ["both", "sms", "email", "both"]
    row = _opt_out(conn)
    assert row["opted_out"] is True
    assert row["source"] == f"inbound:{keyword.strip().upper()}"


def test_start_opts_back_in_without_restoring_preferences(relay_client, conn):
    reg = new_registration(conn, customer_phone=PHONE, notification_pref="both")
    client = relay_client()
    twilio_post(client, INBOUND, _inbound("STOP"))
    assert _opt_out(conn)["opted_out"] is True
    for keyword in ("START", "unstop", "Yes"):
        assert twilio_post(client, INBOUND, _inbound(keyword)).text == "<Response/>"
        row = _opt_out(conn)
        assert row["opted_out"] is False and row["source"] == f"inbound:{keyword.upper()}"
    assert _prefs(conn, reg) == ["both"]
    # Opted out again later: still one row, preferences as before.
    twilio_post(client, INBOUND, _inbound("STOP"))
    assert _opt_out(conn)["opted_out"] is True and _prefs(conn, reg) == ["both"]


@pytest.mark.parametrize("body", ["Thanks!", "STOP please", "HELP", "", "S T O P"])
def test_other_texts_change_nothing(relay_client, conn, body):
    reg = new_registration(conn, customer_phone=PHONE, notification_pref="both")
    response = twilio_post(relay_client(), INBOUND, _inbound(body))
    assert response.status_code == 200 and response.text == "<Response/>"
    assert _opt_out(conn) is None and _prefs(conn, reg) == ["both"]


def test_a_forged_stop_is_403_and_changes_nothing(relay_client, conn):
    reg = new_registration(conn, customer_phone=PHONE, notification_pref="both")
    response = twilio_post(relay_client(), INBOUND, _inbound("STOP"), token="forged")
    assert response.status_code == 403
    assert _opt_out(conn) is None and _prefs(conn, reg) == ["both"]


def test_a_stop_from_a_number_that_is_not_e164_records_nothing(relay_client, conn):
    response = twilio_post(relay_client(), INBOUND, _inbound("STOP", phone="whatsapp:+1555"))
    assert response.status_code == 200 and response.text == "<Response/>"
    assert conn.execute("SELECT count(*) AS n FROM sms_opt_outs").fetchone()["n"] == 0


def test_logs_never_carry_the_full_phone_or_secrets(relay_client, conn, caplog):
    caplog.set_level(logging.DEBUG)
    new_registration(conn, customer_phone=PHONE, notification_pref="both")
    client = relay_client()
    twilio_post(client, INBOUND, _inbound("STOP"))
    twilio_post(client, INBOUND, _inbound("hello there"))
    twilio_post(client, INBOUND, _inbound("STOP"), token="forged")
    text = caplog.text
    assert "4321" in text
    for secret in (PHONE, PHONE[1:], "5557654321", "twilio-test-auth-token", "hello there"):
        assert secret not in text
