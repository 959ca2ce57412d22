"""The six sequences a review found, each a test that failed before its fix.

Eager Celery against the real PostgreSQL, Redis and the real SDKs talking to
the wire stand-ins; each test drives the real task code step by step.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.flow import change_stage, make_due
from tests.pg import new_registration
from tests.quiet_helpers import set_quiet_window

pytestmark = pytest.mark.usefixtures("pipeline")


def _emails(conn) -> list[dict]:
    return conn.execute(
        "SELECT * FROM registration_notifications WHERE channel = 'email' ORDER BY id"
    ).fetchall()


def _claim_due() -> dict[str, list[int]]:
    from db.queue import claim_due
    from tasks.database import engine

    with engine().begin() as c:
        refs = claim_due(c, 100).deliveries
    out: dict[str, list[int]] = {"sms": [], "email": []}
    for ref in refs:
        out[ref.channel].append(ref.id)
    return out


def _per_recipient(sends) -> dict[str, int]:
    counts: dict[str, int] = {}
    for send in sends:
        counts[send.to] = counts.get(send.to, 0) + 1
    return counts


# ── 2 ─ a batch's "outcome unknown" survives a quota 429 ────────────────────

def test_2_a_quota_429_after_a_lost_batch_answer_keeps_it_unknown(conn, resend_wire):
    from tasks.sending import email_batch

    # Resend accepts the batch and the answer is lost; the retry (same key)
    # meets the daily quota. Then one member switches to `none`.
    resend_wire.script("q0@example.com", ["timeout_after_accept:2", "daily_quota_exceeded"])
    regs = []
    for i in range(3):
        reg = new_registration(conn, customer_email=f"q{i}@example.com",
                               notification_pref="email", customer_phone=f"+1555333{i:04d}")
        change_stage(conn, reg, "sticker_ready")
        regs.append(reg)
    make_due(conn)
    ids = _claim_due()["email"]
    first = email_batch.run(ids)
    assert first.status == "retry", first
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")
    second = email_batch.run(ids)
    assert second.status == "retry" and "daily_quota" in second.detail, second

    conn.execute("UPDATE registrations SET notification_pref = 'none' WHERE id = %s", (regs[2],))
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")
    email_batch.run(ids)
    # Each customer got the first, accepted e-mail and no second one.
    assert _per_recipient(resend_wire.sends()) == {f"q{i}@example.com": 1 for i in range(3)}
    rows = {str(r["registration_id"]): r for r in _emails(conn)}
    for reg in regs[:2]:
        assert (rows[reg]["status"], rows[reg]["error_code"], rows[reg]["outcome_unknown"]) == (
            "failed", "outcome_unknown", True)


# ── 3 ─ a single e-mail's 409 after a lost answer is not "not sent" ─────────

def test_3_a_409_after_a_lost_answer_is_unknown_and_never_falls_back(conn, resend_wire,
                                                                     twilio_wire):
    from tasks.sending import delivery_flow

    resend_wire.script("solo@example.com", ["timeout_after_accept:2"])
    reg = new_registration(conn, customer_email="solo@example.com", notification_pref="email",
                           customer_phone="+15553330100")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    (delivery_id,) = _claim_due()["email"]
    first = delivery_flow.run(delivery_id, "email")
    assert first.status == "retry", first
    # The customer changes language: the retry's payload differs under the same key.
    conn.execute("UPDATE registrations SET language = 'es' WHERE id = %s", (reg,))
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")
    second = delivery_flow.run(delivery_id, "email")
    assert second.status == "failed", second

    # No text in its place: the e-mail may well have gone out.
    assert twilio_wire.accepted_count() == 0
    (row,) = _emails(conn)
    assert (row["status"], row["error_code"], row["outcome_unknown"]) == (
        "failed", "invalid_idempotent_request", True)
    assert conn.execute("SELECT count(*) AS n FROM registration_notifications "
                        "WHERE fallback_for IS NOT NULL").fetchone()["n"] == 0
    assert resend_wire.accepted_count() == 1


# ── found by the model ──────────────────────────────────────────────────────

def test_model_a_lost_text_then_a_new_number_is_adopted_not_sent_again(conn, twilio_wire):
    # Shrunk from the model's soak run: Twilio accepted the text and the answer
    # was lost; the customer changed number before the retry. The retry looked
    # for the earlier text at the new number, found nothing, and sent a second.
    from tasks.sending import delivery_flow

    twilio_wire.script("+15553330500", ["timeout_after_accept:2"])
    reg = new_registration(conn, customer_phone="+15553330500", notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    (delivery_id,) = _claim_due()["sms"]
    assert delivery_flow.run(delivery_id, "sms").status == "retry"
    conn.execute("UPDATE registrations SET customer_phone = '+15553330501' WHERE id = %s",
                 (reg,))
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")
    again = delivery_flow.run(delivery_id, "sms")
    assert again.status == "sent" and "adopted" in again.detail, again
    assert twilio_wire.accepted_count() == 1
    row = conn.execute("SELECT * FROM registration_notifications WHERE id = %s",
                       (delivery_id,)).fetchone()
    assert row["provider_message_id"] == twilio_wire.sends()[0].id


def test_model_skipped_after_a_lost_answer_still_says_it_may_have_gone(conn, resend_wire):
    # From the model's soak run: Resend accepted the e-mail and the answer was
    # lost; the customer then chose `none`. The delivery is rightly skipped,
    # but it said outcome_unknown = false: the audit denied an e-mail the
    # customer had received.
    from tasks.sending import delivery_flow

    resend_wire.script("gone@example.com", ["timeout_after_accept:2"])
    reg = new_registration(conn, customer_email="gone@example.com", notification_pref="email")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    (delivery_id,) = _claim_due()["email"]
    assert delivery_flow.run(delivery_id, "email").status == "retry"
    conn.execute("UPDATE registrations SET notification_pref = 'none' WHERE id = %s", (reg,))
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")
    assert delivery_flow.run(delivery_id, "email").status == "skipped"
    row = conn.execute("SELECT * FROM registration_notifications WHERE id = %s",
                       (delivery_id,)).fetchone()
    assert (row["status"], row["skip_reason"], row["outcome_unknown"]) == (
        "skipped", "preference", True)
    assert resend_wire.accepted_count() == 1


# ── 5 ─ quiet hours are checked again at the claim ──────────────────────────

def test_5_a_retry_that_comes_due_inside_quiet_hours_waits_for_the_morning(conn, twilio_wire):
    from tasks.sending import delivery_flow

    # Daytime at the queue run: no window now. The first attempt meets a 5xx.
    set_quiet_window(conn, "America/Chicago", 3600, 7200)
    twilio_wire.script("+15553330200", ["500"])
    reg = new_registration(conn, customer_phone="+15553330200", notification_pref="sms",
                           time_zone="America/Chicago")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    (delivery_id,) = _claim_due()["sms"]
    first = delivery_flow.run(delivery_id, "sms")
    assert first.status == "retry", first

    # The retry comes due after the window opened in the customer's zone.
    set_quiet_window(conn, "America/Chicago", -60, 3600)
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")
    second = delivery_flow.run(delivery_id, "sms")
    assert second.status == "quiet-hours", second
    assert twilio_wire.accepted_count() == 0
    row = conn.execute("SELECT * FROM registration_notifications WHERE id = %s",
                       (delivery_id,)).fetchone()
    assert row["status"] == "sending" and row["parked"] and row["lease_until"] is None
    opens = conn.execute("SELECT now() + interval '3600 seconds' AS t").fetchone()["t"]
    assert abs((row["next_attempt_at"] - opens).total_seconds()) < 120


def test_5_a_burst_sent_with_now_still_bypasses_quiet_hours_at_the_claim(conn, twilio_wire):
    from tasks.sending import delivery_flow

    set_quiet_window(conn, "UTC", -60, 3600)
    reg = new_registration(conn, customer_phone="+15553330300", notification_pref="sms",
                           time_zone="UTC")
    change_stage(conn, reg, "sticker_ready")
    conn.execute("UPDATE notification_queue SET bypass_quiet_hours = true")
    make_due(conn)
    (delivery_id,) = _claim_due()["sms"]
    assert delivery_flow.run(delivery_id, "sms").status == "sent"
    assert twilio_wire.accepted_count() == 1


# ── 4 ─ a staff digest goes once, whatever it is grouped with later ──────────

STAFF = "desk@lonestar.test"


def _digest(conn, phone: str, body: str) -> int:
    """A pending reply digest with one reply in it (what the inbound webhook writes)."""
    from db import replies
    from db.replies import Inbound
    from tasks.database import engine

    with engine().begin() as c:
        inbound = replies.record(c, message_sid=f"SM{phone[1:]}{body[:4]}", from_phone=phone,
                                 to_phone="+15005550006", body=body, twilio_kind=None)
        assert isinstance(inbound, Inbound)
        return replies.join_digest(c, inbound, phone)


def test_4_a_digest_sent_before_its_worker_died_is_not_mailed_again_with_a_new_one(
        conn, resend_wire):
    from db import replies
    from tasks.database import engine
    from tasks.providers.registry import email_provider
    from tasks.worker import send_reply_digest

    conn.execute("UPDATE notification_config SET staff_email = %s", (STAFF,))
    for i in range(2):
        _digest(conn, f"+1555222{i:04d}", f"hello {i}")
    conn.execute("UPDATE reply_digests SET send_after = now() - interval '1 second'")
    with engine().begin() as c:
        first_ids = replies.claim_digests(c, limit=10, lease_s=60, token="first")
    assert len(first_ids) == 2

    # The worker dies between Resend's accept and the rows' update: the
    # provider call goes out, and nothing after it runs.
    provider = email_provider()
    original = provider.send_batch

    def send_then_die(emails, key):
        original(emails, key)
        raise SystemExit("worker killed")

    provider.send_batch = send_then_die  # type: ignore[method-assign]
    try:
        with pytest.raises(SystemExit):
            send_reply_digest.run(first_ids, "first")
    finally:
        del provider.send_batch
    assert resend_wire.accepted_count() == 2

    # Its lease lapses; a new digest is due as the next queue run claims.
    conn.execute("UPDATE reply_digests SET lease_until = now() - interval '1 second'")
    _digest(conn, "+15552229999", "a third")
    conn.execute("UPDATE reply_digests SET send_after = now() - interval '1 second' "
                 "WHERE status = 'pending'")
    with engine().begin() as c:
        second_ids = replies.claim_digests(c, limit=10, lease_s=60, token="second")
    assert len(second_ids) == 3
    send_reply_digest.send_reply_digests.apply(args=(second_ids, "second")).get()

    # Three digests, three e-mails to staff: the two are answered from
    # Resend's record under their first key, the third goes once.
    assert resend_wire.accepted_count() == 3, [s.text[:40] for s in resend_wire.sends()]
    assert not resend_wire.duplicates()
    assert {r["status"] for r in conn.execute("SELECT status FROM reply_digests")} == {"sent"}


# ── 6 ─ the bounds cover the worst case ─────────────────────────────────────

def test_6_lease_and_gate_hold_cover_a_lookup_and_a_send_at_their_worst(monkeypatch):
    from tasks.providers.registry import email_provider, reset_providers, sms_provider
    from tasks.sending import delivery_flow
    from tasks.settings import get_settings

    monkeypatch.setenv("PROVIDER_TIMEOUT_S", "10")
    get_settings.cache_clear()
    reset_providers()
    delivery_flow._limiter.cache_clear()
    settings = get_settings()
    # Each adapter passes its timeout as the connect AND the read timeout:
    # one call can last their sum.
    texts = sms_provider()
    texts._client()
    twilio_worst = 2 * texts._local.http.timeout
    import resend

    email_provider()
    resend_worst = 2 * resend.default_http_client._timeout
    worst = max(twilio_worst, resend_worst)
    assert worst == 20
    # The lease covers a lookup and a send, each at its worst.
    assert delivery_flow.lease_seconds(settings) >= 2 * worst
    # The gate holds a call's place for as long as the call can be out.
    for channel in ("sms", "email"):
        assert delivery_flow.limiter(channel).hold_s >= worst


# ── 1 ─ the connection budget ───────────────────────────────────────────────

AMQP = "amqp://guest:guest@127.0.0.1:5672/unused"


def _work_controller(concurrency: int, pool: str):
    """A real Celery worker object, built (worker_init sent) but never started."""
    from tasks.worker.app import app

    return app.WorkController(concurrency=concurrency, pool_cls=pool, hostname="budget@test")


@pytest.fixture()
def built_workers() -> Iterator[None]:
    """Undo what building a worker does to this test process, for the tests after it.

    Building one marks the process as a worker (result.get() then refuses to
    block: eager tasks in later tests would fail) and sizes the pool for it.
    """
    from celery._state import _set_task_join_will_block

    from tasks import database

    yield
    _set_task_join_will_block(False)
    database._threads = None
    database.reset_engine()


def test_1_the_pool_follows_the_worker_threads_however_they_are_set(conn, capfd, built_workers):
    from tasks.database import engine, reset_engine

    reset_engine()
    _work_controller(64, "threads")
    assert engine().pool.size() == 64
    # 64 thread(s) fit the test server; 500 do not, and the worker says so in one line.
    assert "max_connections" not in capfd.readouterr().err
    _work_controller(500, "threads")
    lines = [line for line in capfd.readouterr().err.splitlines() if "max_connections" in line]
    assert len(lines) == 1 and "500 thread(s) x 1 process(es)" in lines[0], lines
    # Prefork: one thread per child process, the budget is the children.
    _work_controller(3, "prefork")
    assert engine().pool.size() == 1


def test_1_a_send_holds_one_connection_at_a_time_with_postgresql_coordination(
        conn, twilio_wire, monkeypatch):
    from sqlalchemy import event

    from tasks.database import engine
    from tasks.sending import delivery_flow
    from tests.conftest import reset_process_state

    monkeypatch.setenv("CELERY_BROKER_URL", AMQP)
    monkeypatch.delenv("COORDINATION_REDIS_URL", raising=False)
    reset_process_state()
    reg = new_registration(conn, customer_phone="+15553330400", notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    (delivery_id,) = _claim_due()["sms"]
    assert delivery_flow.limiter("sms").backend == "postgresql"

    out = peak = 0

    def checkout(*_a):
        nonlocal out, peak
        out += 1
        peak = max(peak, out)

    def checkin(*_a):
        nonlocal out
        out -= 1

    pool = engine().pool
    event.listen(pool, "checkout", checkout)
    event.listen(pool, "checkin", checkin)
    try:
        assert delivery_flow.run(delivery_id, "sms").status == "sent"
    finally:
        event.remove(pool, "checkout", checkout)
        event.remove(pool, "checkin", checkin)
    assert twilio_wire.accepted_count() == 1
    assert peak == 1


def test_1_a_pool_timeout_is_retried_like_any_infrastructure_error(clean_db):
    import sqlalchemy.exc

    from db.connection import make_engine
    from tasks.worker.retry_policy import INFRASTRUCTURE_ERRORS

    small = make_engine(clean_db, pool_size=1, pool_timeout=0.1)
    held = [small.connect(), small.connect()]  # the pool and its overflow
    try:
        with pytest.raises(sqlalchemy.exc.TimeoutError) as caught:
            small.connect()
        assert isinstance(caught.value, INFRASTRUCTURE_ERRORS)
    finally:
        for c in held:
            c.close()
        small.dispose()


def test_4_a_digest_that_waited_at_the_gate_past_its_lease_is_leased_again_for_its_call(
        conn, resend_wire, monkeypatch):
    # The digest's send waits at the gate (another call holds the one place a
    # second has) for longer than its lease; the lease is renewed after the
    # wait, so the queue run cannot take the digest while its e-mail is out.
    import threading
    import time

    from db import replies
    from tasks.database import engine
    from tasks.sending.bounds import lease_seconds
    from tasks.sending.delivery_flow import limiter
    from tasks.settings import get_settings
    from tasks.worker.send_reply_digest import send_reply_digests
    from tests.conftest import reset_process_state
    from tests.send_path_model_support import move_clock, reset_clock

    monkeypatch.setenv("RESEND_RATE_PER_S", "1")  # one call in any second
    reset_process_state()
    conn.execute("UPDATE notification_config SET staff_email = %s", (STAFF,))
    _digest(conn, "+15552220500", "waited at the gate")
    conn.execute("UPDATE reply_digests SET send_after = now() - interval '1 second'")
    with engine().begin() as c:
        ids = replies.claim_digests(c, limit=10, lease_s=60, token="first")
    assert len(ids) == 1

    other_call_out = threading.Event()
    release_other = threading.Event()

    def another_call() -> None:
        with limiter("email").call():  # holds the gate's one place
            other_call_out.set()
            release_other.wait(10)

    taken_while_out: list[list[int]] = []

    def while_the_email_is_out(request, phase: str) -> None:
        if phase == "arrived":
            with engine().begin() as c:
                taken_while_out.append(
                    replies.claim_digests(c, limit=10, lease_s=60, token="second"))

    other = threading.Thread(target=another_call)
    other.start()
    assert other_call_out.wait(10)
    results: list[object] = []
    task = threading.Thread(target=lambda: results.append(
        send_reply_digests.apply(args=(ids, "first")).get()))
    resend_wire.pause = while_the_email_is_out
    try:
        task.start()
        # The task took its digest (leased anew, for lease_seconds, at its
        # start), rendered it, and waits at the gate.
        deadline = time.monotonic() + 10
        while not conn.execute("SELECT lease_until < now() + interval '59 seconds' AS t "
                               "FROM reply_digests WHERE id = %s", (ids[0],)).fetchone()["t"]:
            assert time.monotonic() < deadline, "the task never took its digest"
            time.sleep(0.02)
        time.sleep(0.3)
        assert conn.execute("SELECT attempts FROM reply_digests WHERE id = %s",
                            (ids[0],)).fetchone()["attempts"] == 0
        # The wait lasts longer than the lease the digest was taken with.
        move_clock(conn, lease_seconds(get_settings()) + 5)
        release_other.set()
        task.join(30)
        other.join(10)
    finally:
        resend_wire.pause = None
        release_other.set()
        reset_clock(conn)
    assert results and str(results[0]).startswith("sent"), results
    assert taken_while_out == [[]], taken_while_out
    assert resend_wire.accepted_count() == 1
    row = conn.execute("SELECT status, claim_token FROM reply_digests WHERE id = %s",
                       (ids[0],)).fetchone()
    assert (row["status"], row["claim_token"]) == ("sent", "first")


def test_1_eight_sends_at_once_on_a_worker_started_with_c_8_all_go(
        conn, twilio_wire, resend_wire, redis_server, monkeypatch, built_workers):
    # Shrunk by the model from the behaviour before the fix: a worker started
    # with -c 8 over WORKER_CONCURRENCY=2, PostgreSQL coordination, eight
    # sends at once, each call slow enough that all hold their connection
    # together. The pool stayed at 2 (+2 overflow), each holder asked it for a
    # second connection for the rate limiter, and the sends that found none
    # within 30 s ended in a QueuePool timeout, not retried.
    import os

    from tasks.worker.send_email import send_email
    from tasks.worker.send_sms import send_sms
    from tests.send_path_model_support import concurrently, set_world

    for key in ("PROVIDER_TIMEOUT_S", "WORKER_CONCURRENCY", "CELERY_BROKER_URL",
                "COORDINATION_REDIS_URL", "CELERY_BROKER_WRITE_URL"):
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)
    set_world(timeout_s=0.3, coordination="postgresql", threads=8, redis_url=redis_server.url)
    from tasks.sending.delivery_flow import limiter

    assert limiter("sms").backend == "postgresql"
    for i in range(4):
        reg = new_registration(conn, customer_phone=f"+1555333{i + 700:04d}",
                               customer_email=f"c8-{i}@example.com", notification_pref="both")
        change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    due = _claim_due()
    tasks = [(send_sms, i) for i in due["sms"]] + [(send_email, i) for i in due["email"]]
    assert len(tasks) == 8
    for wire in (twilio_wire, resend_wire):
        wire.configure(latency=0.18)
    results: dict[int, object] = {}
    errors = concurrently(*(
        (lambda t=t, i=i: results.__setitem__(i, t.apply((i,)))) for t, i in tasks))
    assert not errors, errors
    failed = {i: r.result for i, r in results.items() if r.failed()}  # type: ignore[attr-defined]
    assert not failed, failed
    assert twilio_wire.accepted_count() == 4 and resend_wire.accepted_count() == 4
    assert {r["status"] for r in conn.execute(
        "SELECT status FROM registration_notifications")} == {"sent"}


def test_6_a_retried_text_whose_lookup_and_send_take_their_worst_is_not_sent_by_a_second_worker(
        conn, twilio_wire, monkeypatch):
    # The first attempt's connection drops (Twilio may have it); the retry
    # looks it up and sends, each call at the adapters' worst (the provider
    # sees the request 2 x PROVIDER_TIMEOUT_S after it left). Meanwhile the
    # queue run's sweep and a second worker take any delivery whose lease
    # lapsed. With a lease shorter than a lookup plus a send (2 x timeout + 15
    # = 35 s against 40 s) the second worker claimed it while the first
    # worker's text was still on its way, found nothing at Twilio and sent a
    # second text.
    from tasks.sending import delivery_flow
    from tasks.sending.bounds import lease_seconds
    from tasks.settings import get_settings
    from tests.conftest import reset_process_state
    from tests.flow import run_tick
    from tests.send_path_model_support import SlowCalls, move_clock, reset_clock

    monkeypatch.setenv("PROVIDER_TIMEOUT_S", "10")  # the default: a 20 s call at worst
    reset_process_state()
    phone = "+15553330600"
    reg = new_registration(conn, customer_phone=phone, notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    (delivery_id,) = _claim_due()["sms"]
    twilio_wire.script(phone, ["drop"])
    assert delivery_flow.run(delivery_id, "sms").status == "retry"
    conn.execute("UPDATE registration_notifications SET next_attempt_at = now()")

    second: list[str] = []

    def while_out(seconds: float) -> None:
        move_clock(conn, seconds)
        run_tick()
        lapsed = conn.execute("SELECT lease_until <= now() AS lapsed FROM "
                              "registration_notifications WHERE id = %s",
                              (delivery_id,)).fetchone()["lapsed"]
        if lapsed:
            second.append(str(delivery_flow.run(delivery_id, "sms")))

    slow = SlowCalls(while_out)
    slow.timeout_s, slow.lease_s = 10.0, lease_seconds(get_settings())
    slow.arm(phone, "worst")  # the lookup
    slow.arm(phone, "worst")  # the send
    twilio_wire.pause = slow
    try:
        outcome = delivery_flow.run(delivery_id, "sms")
    finally:
        twilio_wire.pause = None
        reset_clock(conn)
    assert slow.fired == ["worst", "worst"] and not slow.errors, (slow.fired, slow.errors)
    assert outcome.status == "sent", outcome
    assert second == [], second
    assert twilio_wire.accepted_count() == 1, [s.id for s in twilio_wire.sends()]
