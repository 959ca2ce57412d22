"""Provider failures through the real SDKs: retries, permanent errors, maybe-sent (eager Celery)."""

from __future__ import annotations

import pytest

from tests.flow import by_channel, change_stage, deliveries, make_due, run_tick
from tests.pg import new_registration

pytestmark = pytest.mark.usefixtures("pipeline")

PHONE = "+15551239001"
EMAIL = "pat@example.com"


def _notify(conn, **fields) -> str:
    reg = new_registration(conn, customer_phone=PHONE, customer_email=EMAIL, **fields)
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    run_tick()
    return reg


def test_twilio_5xx_then_success_sends_exactly_once(conn, twilio_wire):
    twilio_wire.script(PHONE, ["500", "503", "accept"])
    reg = _notify(conn, notification_pref="sms")
    row = by_channel(deliveries(conn, reg))["sms"]
    assert row["status"] == "sent" and row["attempts"] == 3
    assert twilio_wire.accepted_count(PHONE) == 1
    assert row["provider_message_id"] == twilio_wire.sends(PHONE)[0].id
    assert row["error_code"] is None


def test_resend_5xx_then_success_keeps_one_idempotency_key(conn, resend_wire):
    resend_wire.script(EMAIL, ["500", "502", "accept"])
    reg = _notify(conn, notification_pref="email")
    row = by_channel(deliveries(conn, reg))["email"]
    assert row["status"] == "sent" and row["attempts"] == 3
    keys = {a.idempotency_key for a in resend_wire.attempts()}
    assert keys == {f"regnotify-delivery-{row['id']}"}
    assert resend_wire.accepted_count(EMAIL) == 1


@pytest.mark.parametrize(
    ("phone", "code"),
    [("+15005550001", "21211"), ("+15005550002", "21612"), ("+15005550003", "21408"),
     ("+15005550009", "21614")],
)
def test_twilio_permanent_errors_fail_at_once(conn, twilio_wire, phone, code):
    reg = new_registration(conn, customer_phone=phone, notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    run_tick()
    row = by_channel(deliveries(conn, reg))["sms"]
    assert (row["status"], row["error_code"], row["attempts"]) == ("failed", code, 1)
    assert row["error_message"]
    assert len(twilio_wire.attempts()) == 1
    assert twilio_wire.accepted_count() == 0


def test_twilio_21610_fails_and_opts_the_number_out(conn, twilio_wire):
    reg = new_registration(conn, customer_phone="+15005550004", notification_pref="both")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    run_tick()
    row = by_channel(deliveries(conn, reg))["sms"]
    assert (row["status"], row["error_code"]) == ("failed", "21610")
    opt = conn.execute("SELECT opted_out, source FROM sms_opt_outs WHERE phone = '+15005550004'"
                       ).fetchone()
    assert opt == {"opted_out": True, "source": "twilio:21610"}
    # The next change does not even try to text this customer.
    change_stage(conn, reg, "sticker_delivered")
    make_due(conn)
    run_tick()
    latest = [r for r in deliveries(conn, reg) if r["new_stage"] == "sticker_delivered"]
    sms = next(r for r in latest if r["channel"] == "sms")
    assert (sms["status"], sms["skip_reason"]) == ("skipped", "opted_out")
    assert len(twilio_wire.attempts()) == 1


@pytest.mark.parametrize("code", ["20003", "21606"])
def test_twilio_scripted_permanent_codes(conn, twilio_wire, code):
    twilio_wire.script(PHONE, [code])
    reg = _notify(conn, notification_pref="sms")
    row = by_channel(deliveries(conn, reg))["sms"]
    assert (row["status"], row["error_code"], row["attempts"]) == ("failed", code, 1)


def test_resend_validation_error_fails_at_once(conn, resend_wire):
    reg = new_registration(conn, customer_email="someone@invalid.test", notification_pref="email")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    run_tick()
    row = by_channel(deliveries(conn, reg))["email"]
    assert (row["status"], row["error_code"], row["attempts"]) == ("failed", "validation_error", 1)
    assert len(resend_wire.attempts()) == 1


def test_resend_bad_key_fails_with_its_type(conn, resend_wire, monkeypatch):
    from tests.conftest import reset_process_state

    monkeypatch.setenv("RESEND_API_KEY", "re_wrong_key")
    reset_process_state()
    reg = _notify(conn, notification_pref="email")
    row = by_channel(deliveries(conn, reg))["email"]
    assert row["status"] == "failed" and row["error_code"] in ("invalid_api_key", "http_403")
    assert row["attempts"] == 1


def test_retries_stop_at_the_limit_with_the_last_error(conn, twilio_wire):
    twilio_wire.script(PHONE, ["500", "500", "500", "503"])  # SEND_MAX_RETRIES=3 -> 4 tries
    reg = _notify(conn, notification_pref="sms")
    row = by_channel(deliveries(conn, reg))["sms"]
    assert (row["status"], row["attempts"]) == ("failed", 4)
    assert row["error_code"] in ("20500", "http_503", "503")
    assert twilio_wire.accepted_count() == 0


def test_rate_limited_then_accepted(conn, twilio_wire, resend_wire):
    twilio_wire.script(PHONE, ["429:0.1", "accept"])
    resend_wire.script(EMAIL, ["429:0.1", "accept"])
    reg = _notify(conn)
    rows = by_channel(deliveries(conn, reg))
    assert rows["sms"]["status"] == rows["email"]["status"] == "sent"
    assert rows["sms"]["attempts"] == rows["email"]["attempts"] == 2
    assert twilio_wire.accepted_count() == resend_wire.accepted_count() == 1


def test_resend_concurrent_key_409_retries_and_invalid_key_409_fails(conn, resend_wire):
    resend_wire.script(EMAIL, ["409:concurrent_idempotent_requests", "accept"])
    reg = _notify(conn, notification_pref="email")
    assert by_channel(deliveries(conn, reg))["email"]["status"] == "sent"

    resend_wire.script("other@example.com", ["409:invalid_idempotent_request"])
    reg2 = new_registration(conn, customer_email="other@example.com", notification_pref="email",
                            customer_phone=None)
    change_stage(conn, reg2, "sticker_ready")
    make_due(conn)
    run_tick()
    row = by_channel(deliveries(conn, reg2))["email"]
    assert (row["status"], row["error_code"]) == ("failed", "invalid_idempotent_request")


def test_twilio_timeout_after_acceptance_is_adopted_not_resent(conn, twilio_wire):
    # PROVIDER_TIMEOUT_S=1: Twilio accepts, then answers too late.
    twilio_wire.script(PHONE, ["timeout_after_accept:2"])
    reg = _notify(conn, notification_pref="sms")
    row = by_channel(deliveries(conn, reg))["sms"]
    [accepted] = twilio_wire.sends(PHONE)
    assert twilio_wire.accepted_count(PHONE) == 1
    assert row["status"] == "sent"
    assert row["provider_message_id"] == accepted.id


def test_twilio_dropped_connection_after_acceptance_is_adopted(conn, twilio_wire):
    twilio_wire.script(PHONE, ["drop_after_accept"])
    reg = _notify(conn, notification_pref="sms")
    row = by_channel(deliveries(conn, reg))["sms"]
    assert twilio_wire.accepted_count(PHONE) == 1
    assert row["status"] == "sent" and row["provider_message_id"] == twilio_wire.sends()[0].id


def test_a_text_still_queued_at_twilio_is_adopted_not_resent(conn, twilio_wire):
    # Twilio holds the accepted text in its queue: no DateSent yet, so a
    # lookup filtered on DateSent would miss it and the retry would send again.
    twilio_wire.configure(carrier_queue_s=3600)
    twilio_wire.script(PHONE, ["drop_after_accept"])
    reg = _notify(conn, notification_pref="sms")
    row = by_channel(deliveries(conn, reg))["sms"]
    assert twilio_wire.accepted_count(PHONE) == 1
    assert row["status"] == "sent" and row["provider_message_id"] == twilio_wire.sends()[0].id


def test_lookup_ignores_the_same_text_from_an_earlier_burst(twilio_wire):
    from datetime import UTC, datetime, timedelta

    from tasks.providers.base import Sms
    from tasks.providers.registry import sms_provider

    provider = sms_provider()
    text = Sms(to=PHONE, body="Your registration is at the DMV.")
    sid = provider.send(text)
    now = datetime.now(UTC)
    # An attempt that started well after that message (A->B->A sends the same
    # words again): the old message is not this attempt's.
    assert provider.find_sent(text, now + timedelta(minutes=10)) is None
    assert provider.find_sent(text, now) == sid
    assert provider.find_sent(Sms(to=PHONE, body="Another text."), now) is None


def test_a_text_goes_out_whole_on_the_short_post_path_and_the_sdk_path(twilio_wire):
    # Creating a message goes straight to the session's urllib3 pool (no
    # per-request merging); a session holding a cookie goes the SDK's own way. Both must
    # put the same form, credentials and Retry-After handling on the wire.
    from tasks.providers.base import ProviderError, Sms
    from tasks.providers.registry import sms_provider

    provider = sms_provider()
    body = "Héllo & welcome = 100% ready? Reply STOP to opt out."
    provider.send(Sms(to=PHONE, body=body, status_callback="https://relay.test/cb?x=1&y=2"))
    sent = twilio_wire.sends()[-1]
    assert (sent.body, sent.status_callback) == (body, "https://relay.test/cb?x=1&y=2")
    twilio_wire.script(PHONE, ["429:7"])
    with pytest.raises(ProviderError) as caught:
        provider.send(Sms(to=PHONE, body="again"))
    assert caught.value.rate_limited and caught.value.retry_after == 7

    client = provider._client()
    client.http_client.session.cookies.set("seen", "1")
    try:
        provider.send(Sms(to=PHONE, body=body))
    finally:
        client.http_client.session.cookies.clear()
    assert twilio_wire.sends()[-1].body == body and twilio_wire.accepted_count(PHONE) == 2


def test_twilio_dropped_connection_before_acceptance_is_sent_on_retry(conn, twilio_wire):
    twilio_wire.script(PHONE, ["drop", "accept"])
    reg = _notify(conn, notification_pref="sms")
    row = by_channel(deliveries(conn, reg))["sms"]
    assert twilio_wire.accepted_count(PHONE) == 1 and row["status"] == "sent"


def test_resend_timeout_after_acceptance_replays_the_same_email(conn, resend_wire):
    resend_wire.script(EMAIL, ["timeout_after_accept:2"])
    reg = _notify(conn, notification_pref="email")
    row = by_channel(deliveries(conn, reg))["email"]
    [accepted] = resend_wire.sends(EMAIL)
    assert resend_wire.accepted_count(EMAIL) == 1
    assert (row["status"], row["provider_message_id"]) == ("sent", accepted.id)


def test_a_finished_delivery_is_left_alone(conn, twilio_wire):
    from tasks.worker.send_sms import send_sms

    reg = _notify(conn, notification_pref="sms")
    row = by_channel(deliveries(conn, reg))["sms"]
    assert send_sms.apply((row["id"],)).get() == "done already sent"
    assert twilio_wire.accepted_count() == 1


def test_a_leased_delivery_is_left_to_its_worker(conn, twilio_wire):
    from db.queue import claim_due
    from tasks.database import engine
    from tasks.worker.send_sms import send_sms

    reg = new_registration(conn, customer_phone=PHONE, notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    with engine().begin() as c:
        [ref] = claim_due(c, 10).deliveries
    conn.execute("UPDATE registration_notifications SET status = 'sending', "
                 "lease_until = now() + interval '1 minute' WHERE id = %s", (ref.id,))
    assert send_sms.apply((ref.id,)).get().startswith("busy")
    assert twilio_wire.accepted_count() == 0


def test_sweep_redispatches_deliveries_whose_task_was_lost(conn, twilio_wire, monkeypatch):
    from db.queue import claim_due
    from tasks.database import engine
    from tests.conftest import reset_process_state

    monkeypatch.setenv("SWEEP_AFTER_S", "5")
    reset_process_state()
    reg = new_registration(conn, customer_phone=PHONE, notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    with engine().begin() as c:  # claimed, but its send task never ran
        assert len(claim_due(c, 10).deliveries) == 1
    assert run_tick()["swept"] == 0  # too recent to call lost
    conn.execute("UPDATE registration_notifications SET updated_at = now() - interval '10 s'")
    result = run_tick()
    assert result["swept"] == 1
    assert twilio_wire.accepted_count(PHONE) == 1
    assert by_channel(deliveries(conn, reg))["sms"]["status"] == "sent"
    assert run_tick()["swept"] == 0
