"""Customers' replies, through the relay with signed Twilio webhooks: kept, and reaching a person.

The e-mail to staff goes through the real pipeline: the queue run (eager
Celery) claims the due digest and the send task calls the Resend stand-in
with the real resend SDK.
"""

from __future__ import annotations

import itertools
import json

import pytest

from tasks.masking import mask_recipient
from tests.cli_runner import cli
from tests.flow import run_tick
from tests.pg import new_registration
from tests.relay_helpers import twilio_post
from tests.wire import ACCEPTED_TIMEOUT, REPLAYED

pytest_plugins = ["tests.relay_helpers"]
pytestmark = pytest.mark.usefixtures("pipeline")

INBOUND = "/webhooks/twilio/inbound"
DANA = "+15557654321"
STRANGER = "+15559998888"
STAFF = "desk@lonestar.test"
DEALER_PHONE = "(512) 555-0100"
_SIDS = itertools.count(1)


def _text(body: str, phone: str = DANA, sid: str | None = None, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid or f"SMreply{next(_SIDS):026d}",
        "AccountSid": "AC0123456789abcdef0123456789abcdef",
        "From": phone,
        "To": "+15005550006",
        "Body": body,
        "NumMedia": "0",
        **extra,
    }


def _staff(conn, email: str | None = STAFF, **settings: object) -> None:
    conn.execute("UPDATE notification_config SET staff_email = %s, dealership_phone = %s",
                 (email, DEALER_PHONE))
    for column, value in settings.items():
        conn.execute(f"UPDATE notification_config SET {column} = %s", (value,))


def _dana(conn) -> str:
    return new_registration(conn, customer_phone=DANA, customer_name="Dana Driver",
                            customer_email="dana@example.com")


def _stored(conn) -> list[dict]:
    return conn.execute("SELECT * FROM inbound_messages ORDER BY id").fetchall()


def _make_digests_due(conn) -> int:
    return conn.execute("UPDATE reply_digests SET send_after = now() - interval '1 second' "
                        "WHERE status = 'pending'").rowcount


def _staff_mails(resend_wire) -> list:
    return [s for s in resend_wire.sends() if s.to == STAFF]


# ── Kept ─────────────────────────────────────────────────────────────────────


def test_a_reply_is_stored_once_when_twilio_sends_the_webhook_twice(relay_client, conn):
    reg = _dana(conn)
    _staff(conn)
    client = relay_client()
    params = _text("When can I pick up my plates?", sid="SMtwice0000000000000000000000001")
    first = twilio_post(client, INBOUND, params)
    again = twilio_post(client, INBOUND, params)
    assert first.status_code == again.status_code == 200
    (row,) = _stored(conn)
    assert (row["message_sid"], row["from_phone"], row["to_phone"], row["body"]) == (
        "SMtwice0000000000000000000000001", DANA, "+15005550006",
        "When can I pick up my plates?")
    assert str(row["registration_id"]) == reg and row["keyword"] is None
    assert row["received_at"] is not None
    (digest,) = conn.execute("SELECT * FROM reply_digests").fetchall()
    assert digest["reply_count"] == 1 and row["digest_id"] == digest["id"]
    # The retry gets the same answer as the first (whose answer Twilio lost).
    assert first.text == again.text and "passed your message on" in first.text


def test_a_forged_signature_stores_nothing(relay_client, conn):
    _dana(conn)
    _staff(conn)
    response = twilio_post(relay_client(), INBOUND, _text("hello?"), token="forged")
    assert response.status_code == 403
    assert _stored(conn) == []
    assert conn.execute("SELECT count(*) AS n FROM reply_digests").fetchone()["n"] == 0


# ── Reaching staff ───────────────────────────────────────────────────────────


def test_a_burst_of_three_replies_is_one_email_to_staff(relay_client, conn, resend_wire):
    reg = _dana(conn)
    _staff(conn)
    client = relay_client()
    bodies = ["When can I pick up my plates?", "Also: is the sticker in the mail?",
              "Thanks <3 & see you"]
    answers = [twilio_post(client, INBOUND, _text(b)).text for b in bodies]
    # The customer hears back once, with the dealership's phone; then not again today.
    assert answers[0] == ("<Response><Message>Lone Star Auto: thanks, we passed your message "
                          f"on to our team. To reach us: {DEALER_PHONE}.</Message></Response>")
    assert answers[1:] == ["<Response/>", "<Response/>"]

    (digest,) = conn.execute("SELECT * FROM reply_digests").fetchall()
    assert digest["reply_count"] == 3 and digest["status"] == "pending"
    # Debounced: the window runs from the last reply, not the first.
    assert digest["send_after"] > digest["first_at"]

    run_tick()  # the window is still open: nothing goes
    assert _staff_mails(resend_wire) == []
    assert _make_digests_due(conn) == 1
    result = run_tick()
    assert result["reply_digests"] == 1

    (mail,) = _staff_mails(resend_wire)
    assert mail.subject == f"3 texts from Dana Driver ({DANA})"
    for word in ("Dana Driver", reg, "Lone Star Auto", *bodies):
        assert word in mail.text, word
    assert "Thanks &lt;3 &amp; see you" in mail.html and "<3 &" not in mail.html
    assert mail.idempotency_key == f"regnotify-reply-digest-{digest['id']}"
    after = conn.execute("SELECT * FROM reply_digests").fetchone()
    assert (after["status"], after["provider_message_id"], after["recipient"]) == (
        "sent", mail.id, STAFF)
    # Another run sends nothing more.
    run_tick()
    assert len(_staff_mails(resend_wire)) == 1


def test_replies_after_the_email_went_start_a_new_one(relay_client, conn, resend_wire):
    _dana(conn)
    _staff(conn)
    client = relay_client()
    twilio_post(client, INBOUND, _text("first"))
    _make_digests_due(conn)
    run_tick()
    twilio_post(client, INBOUND, _text("second"))
    _make_digests_due(conn)
    run_tick()
    mails = _staff_mails(resend_wire)
    assert [("first" in m.text, "second" in m.text) for m in mails] == [(True, False),
                                                                        (False, True)]


def test_a_reply_from_an_unknown_number_is_stored_and_forwarded_as_unknown(
        relay_client, conn, resend_wire):
    _dana(conn)
    _staff(conn)
    twilio_post(relay_client(), INBOUND, _text("Is my car ready?", phone=STRANGER))
    (row,) = _stored(conn)
    assert row["registration_id"] is None and row["from_phone"] == STRANGER
    _make_digests_due(conn)
    run_tick()
    (mail,) = _staff_mails(resend_wire)
    assert mail.subject == f"A text from an unknown number, {STRANGER}"
    assert "unknown number" in mail.text and "Is my car ready?" in mail.text
    assert "Dana" not in mail.text


def test_without_staff_email_a_reply_is_kept_and_nobody_is_told(relay_client, conn,
                                                                  resend_wire):
    _dana(conn)
    response = twilio_post(relay_client(), INBOUND, _text("anyone there?"))
    assert response.text == "<Response/>"
    assert len(_stored(conn)) == 1
    assert conn.execute("SELECT count(*) AS n FROM reply_digests").fetchone()["n"] == 0


def test_the_passed_on_answer_comes_again_after_reply_ack_every(relay_client, conn):
    _dana(conn)
    _staff(conn)
    client = relay_client()
    assert "passed your message on" in twilio_post(client, INBOUND, _text("one")).text
    assert twilio_post(client, INBOUND, _text("two")).text == "<Response/>"
    conn.execute("UPDATE inbound_messages SET acknowledged_at = now() - interval '25 hours'")
    assert "passed your message on" in twilio_post(client, INBOUND, _text("three")).text
    conn.execute("UPDATE notification_config SET reply_ack_every = NULL")
    conn.execute("UPDATE inbound_messages SET acknowledged_at = now() - interval '25 hours'")
    assert twilio_post(client, INBOUND, _text("four")).text == "<Response/>"


# ── Keywords ─────────────────────────────────────────────────────────────────


def test_revoke_opts_the_number_out_and_is_kept(relay_client, conn, resend_wire):
    _dana(conn)
    _staff(conn)
    response = twilio_post(relay_client(), INBOUND, _text(" Revoke "))
    assert response.text == "<Response/>"
    row = conn.execute("SELECT * FROM sms_opt_outs WHERE phone = %s", (DANA,)).fetchone()
    assert row["opted_out"] is True and row["source"] == "inbound:REVOKE"
    (stored,) = _stored(conn)
    assert (stored["keyword"], stored["keyword_kind"], stored["digest_id"]) == (
        "REVOKE", "opt_out", None)
    _make_digests_due(conn)
    run_tick()
    assert _staff_mails(resend_wire) == []


def test_help_is_answered_with_help_reply(relay_client, conn):
    _dana(conn)
    _staff(conn, help_reply="Lone Star Auto registrations: call (512) 555-0100 & ask for Sam.")
    client = relay_client()
    for word in ("HELP", " info "):
        response = twilio_post(client, INBOUND, _text(word))
        assert response.headers["content-type"].startswith("text/xml")
        assert response.text == ("<Response><Message>Lone Star Auto registrations: call "
                                 "(512) 555-0100 &amp; ask for Sam.</Message></Response>")
    assert [(r["keyword"], r["keyword_kind"]) for r in _stored(conn)] == [
        ("HELP", "help"), ("INFO", "help")]
    assert conn.execute("SELECT count(*) AS n FROM reply_digests").fetchone()["n"] == 0


def test_help_is_left_to_twilio_where_it_answers(relay_client, conn):
    _dana(conn)
    client = relay_client()
    # help_reply unset: Twilio's default keyword handling answers HELP.
    assert twilio_post(client, INBOUND, _text("HELP")).text == "<Response/>"
    # Advanced Opt-Out answered it already (it names the type): no second answer.
    _staff(conn, help_reply="Call us.")
    assert twilio_post(client, INBOUND, _text("AYUDA", OptOutType="HELP")).text == "<Response/>"
    assert [r["keyword_kind"] for r in _stored(conn)] == ["help", "help"]


def test_keywords_are_data_and_advanced_opt_out_types_are_honoured(relay_client, conn):
    _dana(conn)
    client = relay_client()
    conn.execute("UPDATE notification_config SET opt_out_keywords = opt_out_keywords || "
                 "'{PARAR}', opt_in_keywords = opt_in_keywords || '{comenzar}'")
    twilio_post(client, INBOUND, _text("parar"))
    assert conn.execute("SELECT source FROM sms_opt_outs").fetchone()["source"] == "inbound:PARAR"
    twilio_post(client, INBOUND, _text("Comenzar"))
    assert conn.execute("SELECT opted_out FROM sms_opt_outs").fetchone()["opted_out"] is False
    # A keyword only Twilio's Messaging Service knows, named by OptOutType.
    twilio_post(client, INBOUND, _text("BAJA", OptOutType="STOP"))
    row = conn.execute("SELECT * FROM sms_opt_outs").fetchone()
    assert (row["opted_out"], row["source"]) == (True, "inbound:BAJA")


# ── Timeline and metrics ─────────────────────────────────────────────────────


def test_the_timeline_shows_the_reply(relay_client, conn, capsys):
    reg = _dana(conn)
    _staff(conn)
    client = relay_client()
    twilio_post(client, INBOUND, _text("When can I pick up my plates?"))
    twilio_post(client, INBOUND, _text("STOP"))
    twilio_post(client, INBOUND, _text("Unrelated", phone=STRANGER))
    code, out, _ = cli(capsys, "status", reg)
    out = " ".join(out.split())  # the console wraps long lines
    assert code == 0
    assert "Replies from the customer:" in out
    assert '"When can I pick up my plates?" to be e-mailed to staff' in out
    assert '"STOP" opted the number out of texts' in out
    assert "Unrelated" not in out
    _make_digests_due(conn)
    run_tick()
    code, out, _ = cli(capsys, "status", reg, "--json")
    doc = json.loads(out)
    assert [(r["body"], r["forwarded_status"]) for r in doc["replies"]] == [
        ("When can I pick up my plates?", "sent"), ("STOP", None)]
    code, out, _ = cli(capsys, "status", reg)
    # The staff address is masked like every contact in `status`.
    assert f"e-mailed to {mask_recipient('email', STAFF)}" in " ".join(out.split())


def test_metrics_count_replies(relay_client, conn):
    _dana(conn)
    _staff(conn)
    client = relay_client()
    for body in ("one", "two", "STOP"):
        twilio_post(client, INBOUND, _text(body))
    twilio_post(client, INBOUND, _text("who?", phone=STRANGER))
    text = client.get("/metrics").text
    assert 'regnotify_replies_24h{kind="reply",sender="customer"} 2.0' in text
    assert 'regnotify_replies_24h{kind="opt_out",sender="customer"} 1.0' in text
    assert 'regnotify_replies_24h{kind="reply",sender="unknown"} 1.0' in text
    assert 'regnotify_reply_digests{status="pending"} 2.0' in text
    assert 'regnotify_relay_webhooks_total{endpoint="twilio_inbound",outcome="reply"} 3.0' in text


# ── Retention ────────────────────────────────────────────────────────────────


def test_replies_follow_the_delivery_historys_retention(relay_client, conn):
    _dana(conn)
    _staff(conn)
    client = relay_client()
    twilio_post(client, INBOUND, _text("old"))
    _make_digests_due(conn)
    run_tick()
    twilio_post(client, INBOUND, _text("new"))
    conn.execute("UPDATE inbound_messages SET received_at = now() - interval '400 days' "
                 "WHERE body = 'old'")
    conn.execute("UPDATE reply_digests SET created_at = now() - interval '400 days' "
                 "WHERE status = 'sent'")

    def prune() -> int:
        rows = conn.execute("SELECT kind, deleted FROM prune_notifications(100)").fetchall()
        return {r["kind"]: r["deleted"] for r in rows}["replies"]

    assert prune() == 0  # retain_deliveries unset: kept forever
    conn.execute("UPDATE notification_config SET retain_deliveries = interval '1 year'")
    try:
        assert prune() == 2  # the old reply and its sent digest
        assert [r["body"] for r in _stored(conn)] == ["new"]
        assert conn.execute("SELECT status FROM reply_digests").fetchall() == [
            {"status": "pending"}]
    finally:
        conn.execute("UPDATE notification_config SET retain_deliveries = NULL")


# ── The e-mail pipeline's guarantees hold for staff's e-mails ───────────────


def test_a_lost_answer_is_retried_under_the_same_key_and_staff_get_one_email(
        relay_client, conn, resend_wire):
    # Resend accepts the first request, then its answer stalls past PROVIDER_TIMEOUT_S.
    resend_wire.script(STAFF, ["timeout_after_accept:2"])
    _dana(conn)
    _staff(conn)
    twilio_post(relay_client(), INBOUND, _text("hello?"))
    _make_digests_due(conn)
    run_tick()
    assert [a.outcome for a in resend_wire.attempts()] == [ACCEPTED_TIMEOUT, REPLAYED]
    assert len({a.idempotency_key for a in resend_wire.attempts()}) == 1
    (mail,) = _staff_mails(resend_wire)
    digest = conn.execute("SELECT * FROM reply_digests").fetchone()
    assert (digest["status"], digest["attempts"], digest["provider_message_id"]) == (
        "sent", 2, mail.id)


def test_digests_due_together_go_in_one_batch_request(relay_client, conn, resend_wire):
    _dana(conn)
    _staff(conn)
    client = relay_client()
    twilio_post(client, INBOUND, _text("from Dana"))
    twilio_post(client, INBOUND, _text("from a stranger", phone=STRANGER))
    assert _make_digests_due(conn) == 2
    run_tick()
    (attempt,) = resend_wire.attempts()
    assert attempt.idempotency_key.startswith("regnotify-reply-digests-")
    mails = _staff_mails(resend_wire)
    assert sorted("Dana" in m.text for m in mails) == [False, True]
    assert [r["status"] for r in conn.execute("SELECT status FROM reply_digests")] == [
        "sent", "sent"]


def test_a_task_of_an_earlier_claim_sends_nothing(relay_client, conn, resend_wire):
    # The first claim's task sat behind a backlog until its lease lapsed; the
    # queue run claimed the digest again and that task sent it.
    from db import replies
    from tasks.database import engine
    from tasks.worker import send_reply_digest

    _dana(conn)
    _staff(conn)
    twilio_post(relay_client(), INBOUND, _text("hello?"))
    _make_digests_due(conn)
    with engine().begin() as c:
        (digest_id,) = replies.claim_digests(c, limit=10, lease_s=60, token="first-claim")
    conn.execute("UPDATE reply_digests SET lease_until = now() - interval '1 second'")
    run_tick()
    assert len(_staff_mails(resend_wire)) == 1
    late = send_reply_digest.run([digest_id], "first-claim")
    assert late.status == "done"
    assert len(_staff_mails(resend_wire)) == 1 and len(resend_wire.attempts()) == 1


def test_a_signed_text_without_a_message_sid_is_still_kept_once_and_acted_on(
        relay_client, conn):
    _dana(conn)
    client = relay_client()
    params = {"From": DANA, "To": "+15005550006", "Body": "STOP"}
    twilio_post(client, INBOUND, params)
    twilio_post(client, INBOUND, params)
    (row,) = _stored(conn)
    assert row["message_sid"].startswith("nosid-") and row["keyword"] == "STOP"
    assert conn.execute("SELECT opted_out FROM sms_opt_outs").fetchone()["opted_out"] is True


def test_a_batch_key_is_stable_and_short():
    from tasks.worker.send_reply_digest import batch_key

    many = list(range(1, 101))
    assert batch_key(many) == batch_key(list(reversed(many))) != batch_key(many[:-1])
    assert len(batch_key(many)) <= 256
