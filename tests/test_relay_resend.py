"""Resend's Svix-signed webhooks against the real database."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta

import pytest

from tests.relay_helpers import (
    SVIX_SECRET,
    delivery,
    new_delivery,
    resend_event,
    resend_post,
    svix_headers,
)

pytest_plugins = ["tests.relay_helpers"]

EMAIL_ID = "4ef9a417-02e9-4d39-ad75-9611e0fcc33c"


def _events(conn) -> int:
    return conn.execute(
        "SELECT count(*) AS n FROM webhook_events WHERE provider = 'resend'").fetchone()["n"]


def test_delivered_moves_sent_to_delivered_with_the_time(relay_client, conn):
    row = new_delivery(conn, channel="email", provider_message_id=EMAIL_ID)
    response = resend_post(relay_client(), resend_event("email.delivered", EMAIL_ID), "msg_1")
    assert response.status_code == 200 and response.json() == {"result": "moved"}
    after = delivery(conn, row)
    assert after["status"] == "delivered"
    assert abs(after["delivered_at"] - datetime.now(UTC)) < timedelta(minutes=1)


def test_bounced_is_final_with_the_bounce_reason(relay_client, conn):
    row = new_delivery(conn, channel="email", provider_message_id=EMAIL_ID)
    client = relay_client()
    bounce = {"message": "550 5.1.1 mailbox does not exist", "subType": "General",
              "type": "Permanent"}
    assert resend_post(client, resend_event("email.bounced", EMAIL_ID, bounce=bounce),
                       "msg_b").json()["result"] == "moved"
    assert resend_post(client, resend_event("email.delivered", EMAIL_ID),
                       "msg_late").json()["result"] == "unchanged"
    after = delivery(conn, row)
    assert after["status"] == "bounced"
    assert after["error_code"] == "bounce:Permanent/General"
    assert "mailbox does not exist" in after["error_message"]
    assert after["delivered_at"] is None


def test_complained_after_delivered_is_final(relay_client, conn):
    row = new_delivery(conn, channel="email", provider_message_id=EMAIL_ID)
    client = relay_client()
    resend_post(client, resend_event("email.delivered", EMAIL_ID), "msg_d")
    resend_post(client, resend_event("email.complained", EMAIL_ID), "msg_c")
    resend_post(client, resend_event("email.bounced", EMAIL_ID), "msg_b")
    after = delivery(conn, row)
    assert after["status"] == "complained" and after["error_code"] == "complaint"
    assert after["delivered_at"] is not None


def test_failed_is_final_and_says_why(relay_client, conn):
    row = new_delivery(conn, channel="email", provider_message_id=EMAIL_ID)
    client = relay_client()
    event = resend_event("email.failed", EMAIL_ID, failed={"reason": "reached_daily_quota"})
    assert resend_post(client, event, "msg_f").json()["result"] == "moved"
    resend_post(client, resend_event("email.delivered", EMAIL_ID), "msg_d")
    after = delivery(conn, row)
    assert after["status"] == "failed" and after["error_code"] == "reached_daily_quota"
    assert "reached_daily_quota" in after["error_message"]


def test_delivery_delayed_is_noted_without_a_status_change(relay_client, conn):
    row = new_delivery(conn, channel="email", provider_message_id=EMAIL_ID)
    client = relay_client()
    response = resend_post(client, resend_event("email.delivery_delayed", EMAIL_ID), "msg_dd")
    assert response.json() == {"result": "noted"}
    after = delivery(conn, row)
    assert after["status"] == "sent" and "delivery delayed" in after["error_message"]
    resend_post(client, resend_event("email.delivered", EMAIL_ID), "msg_d")
    assert delivery(conn, row)["status"] == "delivered"
    # A delay reported after delivery is stale: nothing is noted.
    before = delivery(conn, row)
    later = resend_post(client, resend_event("email.delivery_delayed", EMAIL_ID), "msg_dd2")
    assert later.json() == {"result": "unchanged"}
    assert delivery(conn, row)["updated_at"] == before["updated_at"]


def test_out_of_order_events_end_at_the_furthest_status(relay_client, conn):
    row = new_delivery(conn, channel="email", provider_message_id=EMAIL_ID, status="sending")
    client = relay_client()
    for i, kind in enumerate(["email.delivered", "email.sent", "email.delivery_delayed",
                              "email.sent"]):
        assert resend_post(client, resend_event(kind, EMAIL_ID), f"msg_{i}").status_code == 200
    assert delivery(conn, row)["status"] == "delivered"


def test_a_replayed_svix_id_is_200_and_changes_nothing(relay_client, conn):
    row = new_delivery(conn, channel="email", provider_message_id=EMAIL_ID)
    client = relay_client()
    delayed = resend_event("email.delivery_delayed", EMAIL_ID)
    assert resend_post(client, delayed, "msg_same").json()["result"] == "noted"
    conn.execute("UPDATE registration_notifications SET error_message = 'cleared' "
                 "WHERE id = %s", (row,))
    replay = resend_post(client, delayed, "msg_same")
    assert replay.status_code == 200 and replay.json() == {"result": "duplicate"}
    assert delivery(conn, row)["error_message"] == "cleared"
    # The same svix-id with another body (a retry is byte-identical, so this
    # is a replay too) is not applied either.
    other = resend_post(client, resend_event("email.bounced", EMAIL_ID), "msg_same")
    assert other.json() == {"result": "duplicate"}
    assert delivery(conn, row)["status"] == "sent"
    assert _events(conn) == 1


@pytest.mark.parametrize("minutes", [-6, 6])
def test_a_timestamp_more_than_five_minutes_off_is_403(relay_client, conn, minutes):
    row = new_delivery(conn, channel="email", provider_message_id=EMAIL_ID)
    at = datetime.now(UTC) + timedelta(minutes=minutes)
    response = resend_post(relay_client(), resend_event("email.delivered", EMAIL_ID), "msg_s",
                           at=at)
    assert response.status_code == 403
    assert delivery(conn, row)["status"] == "sent" and _events(conn) == 0


def test_four_minutes_of_skew_is_accepted(relay_client, conn):
    new_delivery(conn, channel="email", provider_message_id=EMAIL_ID)
    at = datetime.now(UTC) - timedelta(minutes=4)
    response = resend_post(relay_client(), resend_event("email.delivered", EMAIL_ID), "msg_s",
                           at=at)
    assert response.status_code == 200


@pytest.mark.parametrize("forgery", ["other secret", "tampered body", "no headers",
                                     "bad signature format", "other id"])
def test_forged_events_are_403_and_change_nothing(relay_client, conn, forgery):
    row = new_delivery(conn, channel="email", provider_message_id=EMAIL_ID)
    client = relay_client()
    payload = resend_event("email.bounced", EMAIL_ID)
    headers = svix_headers(payload, "msg_x")
    body = payload.encode()
    if forgery == "other secret":
        other = "whsec_" + base64.b64encode(b"somebody-else's-secret-32-bytes!").decode()
        headers = svix_headers(payload, "msg_x", secret=other)
    elif forgery == "tampered body":
        body = payload.replace("email.bounced", "email.complained").encode()
    elif forgery == "no headers":
        headers = {"content-type": "application/json"}
    elif forgery == "bad signature format":
        headers["svix-signature"] = "garbage-without-a-comma"
    else:
        headers["svix-id"] = "msg_y"
    response = client.post("/webhooks/resend", content=body, headers=headers)
    assert response.status_code == 403
    assert delivery(conn, row)["status"] == "sent" and _events(conn) == 0


def test_an_unknown_email_id_is_200_and_a_log_line(relay_client, conn, caplog):
    caplog.set_level(logging.INFO, logger="tasks.relay")
    response = resend_post(relay_client(), resend_event("email.delivered", "no-such-email"),
                           "msg_u")
    assert response.status_code == 200 and response.json() == {"result": "unknown"}
    assert "unknown message id no-such-email" in caplog.text


def test_sms_rows_with_the_same_id_are_not_email_deliveries(relay_client, conn):
    row = new_delivery(conn, channel="sms", provider_message_id=EMAIL_ID)
    response = resend_post(relay_client(), resend_event("email.bounced", EMAIL_ID), "msg_1")
    assert response.json() == {"result": "unknown"}
    assert delivery(conn, row)["status"] == "sent"


@pytest.mark.parametrize("payload", ['{"type": "email.opened", "data": {"email_id": "x"}}',
                                     '{"type": "contact.created", "data": {"id": "c"}}',
                                     '{"type": "email.delivered", "data": {}}',
                                     "not json at all", "[]"])
def test_signed_events_we_do_not_handle_are_200_and_ignored(relay_client, conn, payload):
    response = resend_post(relay_client(), payload, "msg_i")
    assert response.status_code == 200 and response.json() == {"result": "ignored"}


def test_without_a_webhook_secret_everything_is_refused(relay_client, conn):
    new_delivery(conn, channel="email", provider_message_id=EMAIL_ID)
    client = relay_client(resend_webhook_secret=None)
    response = resend_post(client, resend_event("email.delivered", EMAIL_ID), "msg_1")
    assert response.status_code == 403


def test_the_secret_never_reaches_the_logs(relay_client, conn, caplog):
    caplog.set_level(logging.DEBUG)
    client = relay_client()
    resend_post(client, resend_event("email.delivered", EMAIL_ID), "msg_1")
    resend_post(client, resend_event("email.delivered", EMAIL_ID), "msg_2", secret="whsec_AAAA")
    assert SVIX_SECRET not in caplog.text and SVIX_SECRET[6:] not in caplog.text
