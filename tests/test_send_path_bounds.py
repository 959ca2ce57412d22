"""The connection budget (1) and the worst-case bounds (6) of the send path.

Each test failed on the behaviour before its fix; the model's shrunk
sequences for both are kept here too (see docs/guarantees-model.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.flow import change_stage, make_due
from tests.pg import new_registration
from tests.test_send_path_faults import _claim_due

pytestmark = pytest.mark.usefixtures("pipeline")


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
    from tasks.broker.app import app

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
    from tasks.worker.infrastructure_retry import INFRASTRUCTURE_ERRORS

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


def test_1_eight_sends_at_once_on_a_worker_started_with_c_8_all_go(
        conn, twilio_wire, resend_wire, redis_server, monkeypatch, built_workers):
    # Shrunk by the model from the behaviour before the fix: a worker started
    # with -c 8 over WORKER_CONCURRENCY=2, PostgreSQL coordination, eight
    # sends at once, each call slow enough that all hold their connection
    # together. The pool stayed at 2 (+2 overflow), each holder asked it for a
    # second connection for the rate limiter, and the sends that found none
    # within 30 s ended in a QueuePool timeout, not retried.

    from tasks.worker.send_email import send_email
    from tasks.worker.send_sms import send_sms
    from tests.send_path_model_support import concurrently, restore_world_env_after, set_world

    restore_world_env_after(monkeypatch)
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
