"""Several due e-mails go through POST /emails/batch (eager Celery, the real resend SDK)."""

from __future__ import annotations

import pytest

from tests.flow import change_stage, make_due, run_tick
from tests.pg import new_registration
from tests.wire import ACCEPTED_TIMEOUT, REPLAYED

pytestmark = pytest.mark.usefixtures("pipeline")


def _due_emails(conn, addresses: list[str]) -> list[str]:
    regs = []
    for i, address in enumerate(addresses):
        reg = new_registration(conn, customer_email=address, notification_pref="email",
                               customer_phone=f"+1555444{i:04d}")
        change_stage(conn, reg, "sticker_ready")
        regs.append(reg)
    make_due(conn)
    return regs


def _emails(conn) -> list[dict]:
    return conn.execute(
        "SELECT * FROM registration_notifications WHERE channel = 'email' ORDER BY id"
    ).fetchall()


def test_several_due_emails_go_in_one_batch_request_with_their_own_ids(conn, resend_wire):
    _due_emails(conn, [f"b{i}@example.com" for i in range(5)])
    run_tick()
    rows = _emails(conn)
    assert {r["status"] for r in rows} == {"sent"}
    assert len(resend_wire.attempts()) == 1
    assert len({r["email_batch_id"] for r in rows}) == 1
    for row in rows:
        send = resend_wire.get_send(row["provider_message_id"])
        assert send is not None and send.to == row["recipient"]
        assert f"delivery:{row['id']}" in {f"{t['name']}:{t['value']}"
                                            for t in send.payload["tags"]}
    (attempt,) = resend_wire.attempts()
    assert attempt.idempotency_key == f"regnotify-batch-{rows[0]['email_batch_id']}"


def test_a_single_due_email_keeps_post_emails(conn, resend_wire):
    _due_emails(conn, ["solo@example.com"])
    run_tick()
    (row,) = _emails(conn)
    assert row["status"] == "sent" and row["email_batch_id"] is None
    assert [a.idempotency_key for a in resend_wire.attempts()] == [
        f"regnotify-delivery-{row['id']}"]


def test_lost_batch_answer_then_retry_sends_nothing_twice(conn, resend_wire):
    # The first request is accepted and then stalls past PROVIDER_TIMEOUT_S (1 s).
    resend_wire.script("lost0@example.com", ["timeout_after_accept:2"])
    _due_emails(conn, [f"lost{i}@example.com" for i in range(3)])
    run_tick()
    rows = _emails(conn)
    assert {r["status"] for r in rows} == {"sent"}
    assert resend_wire.accepted_count() == 3
    assert not resend_wire.duplicates()
    outcomes = [a.outcome for a in resend_wire.attempts()]
    assert outcomes == [ACCEPTED_TIMEOUT, REPLAYED]
    first, second = resend_wire.attempts()
    assert first.idempotency_key == second.idempotency_key
    assert {r["provider_message_id"] for r in rows} == {s.id for s in resend_wire.sends()}
    assert {r["attempts"] for r in rows} == {2}


def test_one_bad_address_fails_alone_with_resends_message(conn, resend_wire):
    _due_emails(conn, ["good1@example.com", "nobody@invalid.test", "good2@example.com"])
    run_tick()
    rows = {r["recipient"]: r for r in _emails(conn)}
    assert rows["good1@example.com"]["status"] == "sent"
    assert rows["good2@example.com"]["status"] == "sent"
    bad = rows["nobody@invalid.test"]
    assert bad["status"] == "failed" and bad["error_code"] == "validation_error"
    assert "invalid.test" in bad["error_message"]
    assert [s.to for s in resend_wire.sends()] == ["good1@example.com", "good2@example.com"]
    assert len(resend_wire.attempts()) == 1


def test_an_address_refused_inside_a_batch_falls_back_to_one_text(conn, resend_wire,
                                                                    twilio_wire):
    regs = _due_emails(conn, ["good1@example.com", "nobody@invalid.test"])
    run_tick()
    bad = conn.execute("SELECT * FROM registration_notifications WHERE channel = 'email' "
                       "AND recipient = 'nobody@invalid.test'").fetchone()
    assert bad["status"] == "failed"
    texts = conn.execute("SELECT * FROM registration_notifications WHERE channel = 'sms' "
                         "AND status <> 'skipped'").fetchall()
    assert [(t["registration_id"], t["fallback_for"], t["status"]) for t in texts] == [
        (bad["registration_id"], bad["id"], "sent")]
    assert str(bad["registration_id"]) == str(regs[1])
    assert [m.to for m in twilio_wire.sends()] == ["+15554440001"]


def _first_batch_attempt(conn, resend_wire, script: list[str]) -> tuple[list[str], list[int],
                                                                         str]:
    """Three due e-mails, one batch attempt answered by `script`; (regs, ids, batch id)."""
    from db.queue import claim_due
    from tasks.database import engine
    from tasks.sending import email_batch

    resend_wire.script("m0@example.com", script)
    regs = _due_emails(conn, [f"m{i}@example.com" for i in range(3)])
    with engine().begin() as c:
        ids = [ref.id for ref in claim_due(c, 100).deliveries if ref.channel == "email"]
    first = email_batch.run(ids)
    assert first.status in ("retry", "waiting"), first
    (batch_id,) = {r["email_batch_id"] for r in _emails(conn)}
    assert batch_id is not None
    return regs, ids, batch_id


def test_lost_batch_answer_then_a_member_withdraws_nobody_gets_it_twice(conn, resend_wire,
                                                                       capsys):
    # Resend accepts the batch and the answer is lost (past PROVIDER_TIMEOUT_S).
    # Before the retry, one customer switches to `none`. Resending the old
    # payload under the old key would mail them; a new key could mail the
    # others twice. So the others end `failed` / outcome_unknown, unsent.
    from tasks.sending import email_batch
    from tests.cli_runner import cli

    regs, ids, batch_id = _first_batch_attempt(conn, resend_wire, ["timeout_after_accept:2"])
    conn.execute("UPDATE registrations SET notification_pref = 'none' WHERE id = %s", (regs[2],))
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")
    second = email_batch.run(ids)
    assert second.status == "busy", second

    rows = {str(r["registration_id"]): r for r in _emails(conn)}
    assert (rows[regs[2]]["status"], rows[regs[2]]["skip_reason"]) == ("skipped", "preference")
    for reg in regs[:2]:
        row = rows[reg]
        assert (row["status"], row["error_code"], row["outcome_unknown"]) == (
            "failed", "outcome_unknown", True), row
        assert "may arrive twice" in row["error_message"]
    # Every member got at most the one e-mail of the first, accepted, attempt.
    per_recipient: dict[str, int] = {}
    for send in resend_wire.sends():
        per_recipient[send.to] = per_recipient.get(send.to, 0) + 1
    assert per_recipient == {f"m{i}@example.com": 1 for i in range(3)}
    assert [a.idempotency_key for a in resend_wire.attempts()] == [f"regnotify-batch-{batch_id}"]

    # Visible in `status` and /metrics.
    code, out, _ = cli(capsys, "status")
    assert code == 0 and "outcome_unknown" in out, out
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from tasks.database import engine
    from tasks.relay.metrics import PipelineCollector

    registry = CollectorRegistry()
    registry.register(PipelineCollector(engine))
    scraped = generate_latest(registry).decode()
    assert 'regnotify_deliveries_outcome_unknown{channel="email"} 2.0' in scraped, scraped

    # Staff re-drive them; retry-failed warns that they may arrive twice, and
    # they leave the batch whose key can no longer cover them.
    code, out, _ = cli(capsys, "retry-failed", "--dry-run")
    assert code == 0 and "may arrive twice" in out, out
    code, out, _ = cli(capsys, "retry-failed")
    assert code == 0 and "may arrive twice" in out, out
    rows = {str(r["registration_id"]): r for r in _emails(conn)}
    assert {rows[r]["status"] for r in regs[:2]} == {"sent"}
    assert {rows[r]["email_batch_id"] for r in regs[:2]} == {None}
    assert rows[regs[2]]["status"] == "skipped"
    assert "m2@example.com" not in [s.to for s in resend_wire.sends()[3:]]


def test_a_batch_surely_not_accepted_goes_again_under_a_new_key_without_who_left(
        conn, resend_wire):
    # A 429 accepted nothing: the members still to send take a new key (the
    # old one with a different payload would be refused), never the old
    # payload with the member who left.
    from tasks.sending import email_batch

    regs, ids, batch_id = _first_batch_attempt(conn, resend_wire, ["429:0"])
    conn.execute("UPDATE registrations SET notification_pref = 'sms' WHERE id = %s", (regs[2],))
    second = email_batch.run(ids)
    assert second.status == "sent", second
    rows = {str(r["registration_id"]): r for r in _emails(conn)}
    assert (rows[regs[2]]["status"], rows[regs[2]]["skip_reason"]) == ("skipped", "preference")
    assert {rows[r]["status"] for r in regs[:2]} == {"sent"}
    new_batch = rows[regs[0]]["email_batch_id"]
    assert new_batch != batch_id
    keys = [a.idempotency_key for a in resend_wire.attempts()]
    assert keys == [f"regnotify-batch-{batch_id}", f"regnotify-batch-{new_batch}"]
    assert sorted(s.to for s in resend_wire.sends()) == ["m0@example.com", "m1@example.com"]


def test_a_lost_batch_answer_with_the_same_members_replays_under_its_key(conn, resend_wire):
    # Nobody left: the same payload under the same key, which Resend
    # recognises and answers from its record.
    from tasks.sending import email_batch

    _regs, ids, _batch_id = _first_batch_attempt(conn, resend_wire, ["timeout_after_accept:2"])
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")
    assert email_batch.run(ids).status == "sent"
    assert {r["status"] for r in _emails(conn)} == {"sent"}
    assert [a.outcome for a in resend_wire.attempts()] == [ACCEPTED_TIMEOUT, REPLAYED]
    assert resend_wire.accepted_count() == 3 and not resend_wire.duplicates()


def test_provider_429_is_a_wait_not_a_failed_attempt(conn, twilio_wire):
    # More 429s than the retry budget (SEND_MAX_RETRIES=3): still sent.
    phone = "+15551238888"
    twilio_wire.script(phone, ["429:0"] * 6 + ["accept"])
    reg = new_registration(conn, customer_phone=phone, notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    run_tick()
    row = conn.execute("SELECT * FROM registration_notifications WHERE channel = 'sms'"
                       ).fetchone()
    assert row["status"] == "sent"
    # Every call is in the history; none of the 429s counted against the budget.
    assert row["attempts"] == 7
    assert row["attempts"] - row["attempts_at_redrive"] == 1
    assert twilio_wire.accepted_count() == 1


def test_parked_deliveries_are_published_by_the_queue_run_when_within_reach(conn, twilio_wire):
    # A wait beyond the broker's horizon parks in the database; the queue run
    # publishes what comes within reach and wakes itself for the rest.
    from db import deliveries as db_deliveries
    from db.queue import claim_due
    from tasks.broker.app import BROKER_HORIZON_S
    from tasks.database import engine
    from tasks.worker.queue_tick import drain_due

    soon = new_registration(conn, customer_phone="+15551237001", notification_pref="sms")
    later = new_registration(conn, customer_phone="+15551237002", notification_pref="sms")
    for reg in (soon, later):
        change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    with engine().begin() as c:
        refs = claim_due(c, 10).deliveries
    ids = {str(r["registration_id"]): r["id"] for r in conn.execute(
        "SELECT registration_id, id FROM registration_notifications WHERE channel = 'sms'")}
    assert len(refs) == 2
    with engine().begin() as c:
        db_deliveries.note_wait(c, [ids[soon]], 0.3, parked=True)
        db_deliveries.note_wait(c, [ids[later]], BROKER_HORIZON_S + 60, parked=True)

    result = drain_due()
    assert result.unparked == 1
    # Woken when the parked one is half a horizon from its time.
    assert result.wake_in_s == pytest.approx(60 + BROKER_HORIZON_S / 2, abs=3)
    rows = {str(r["registration_id"]): r for r in conn.execute(
        "SELECT * FROM registration_notifications WHERE channel = 'sms'")}
    assert rows[soon]["status"] == "sent" and not rows[soon]["parked"]
    assert rows[later]["status"] == "queued" and rows[later]["parked"]
    assert twilio_wire.accepted_count() == 1


def test_an_email_sent_alone_with_unknown_outcome_never_joins_a_batch(conn, resend_wire):
    # Its own Idempotency-Key is the only one that may send it again.
    from db.queue import claim_due
    from tasks.database import engine
    from tasks.sending import delivery_flow
    from tasks.worker.send_email import send_email_batch

    resend_wire.script("alone@example.com", ["timeout_after_accept:2"])
    _due_emails(conn, ["alone@example.com", "other@example.com"])
    with engine().begin() as c:
        ids = sorted(ref.id for ref in claim_due(c, 10).deliveries)
    alone, other = ids
    assert delivery_flow.run(alone, "email").status == "retry"
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")

    send_email_batch.apply(([alone, other],))
    rows = {r["id"]: r for r in _emails(conn)}
    assert {r["status"] for r in rows.values()} == {"sent"}
    assert rows[alone]["email_batch_id"] is None
    assert resend_wire.accepted_count() == 2 and not resend_wire.duplicates()
    keys = [(a.idempotency_key, a.outcome) for a in resend_wire.attempts()]
    assert keys.count((f"regnotify-delivery-{alone}", REPLAYED)) == 1
    assert (f"regnotify-batch-{rows[other]['email_batch_id']}", "accepted") in keys


def test_a_lost_batch_answer_is_not_replayed_under_a_key_resend_has_forgotten(conn,
                                                                            resend_wire):
    # Resend forgets an Idempotency-Key after 24 hours: the same key then
    # sends again. A batch whose answer was lost a day ago is not resent.
    from tasks.sending import email_batch

    _regs, ids, batch_id = _first_batch_attempt(conn, resend_wire, ["timeout_after_accept:2"])
    keyed = conn.execute("SELECT DISTINCT email_batch_keyed_at AS at FROM "
                         "registration_notifications WHERE channel = 'email'").fetchall()
    assert len(keyed) == 1 and keyed[0]["at"] is not None
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now(), "
                 "email_batch_keyed_at = now() - interval '25 hours'")
    assert email_batch.run(ids).status == "busy"
    rows = _emails(conn)
    assert {(r["status"], r["error_code"]) for r in rows} == {("failed", "outcome_unknown")}
    assert "no longer recognises it" in rows[0]["error_message"]
    assert [a.idempotency_key for a in resend_wire.attempts()] == [f"regnotify-batch-{batch_id}"]
