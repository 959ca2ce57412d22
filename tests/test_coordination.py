"""Rate limits, tick marker and wake-up shared by every worker whatever the broker.

With a Redis broker (or COORDINATION_REDIS_URL) they live in Redis; with a
RabbitMQ broker and no Redis named, in PostgreSQL. Two RateLimiter objects
stand for two worker processes: they share nothing but the store.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.relay_helpers import relay_client  # noqa: F401 (fixture)

AMQP = "amqp://guest:guest@127.0.0.1:5672/unused"


@pytest.fixture()
def on_rabbitmq(clean_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Settings as a RabbitMQ deployment has them: no Redis anywhere."""
    from tests.conftest import reset_process_state

    monkeypatch.setenv("DATABASE_URL", clean_db)
    monkeypatch.setenv("CELERY_BROKER_URL", AMQP)
    monkeypatch.delenv("COORDINATION_REDIS_URL", raising=False)
    reset_process_state()
    yield clean_db
    monkeypatch.undo()
    reset_process_state()


def test_backend_follows_the_settings() -> None:
    from tasks.coordination.stores import coordination_backend
    from tasks.settings import Settings

    assert coordination_backend(Settings(celery_broker_url="redis://127.0.0.1:6379/0")) == "redis"
    assert coordination_backend(Settings(celery_broker_url=AMQP)) == "postgresql"
    assert coordination_backend(Settings(celery_broker_url=AMQP,
                                         coordination_redis_url="redis://h:1/2")) == "redis"


def test_two_limiters_on_postgresql_hand_out_one_slot_sequence(on_rabbitmq: str) -> None:
    from tasks.coordination.rate_limit import RateLimiter

    name = f"test-{uuid.uuid4().hex[:6]}"
    first = RateLimiter(name, 10, redis_url=None)
    second = RateLimiter(name, 10, redis_url=None)
    assert first.backend == second.backend == "postgresql"
    waits = [lim.reserve(math.inf).wait_s for lim in (first, second) * 5]
    # Ten slots, one interval apart, alternating between the two "processes".
    gaps = [b - a for a, b in itertools.pairwise(waits)]
    assert all(0.08 < g < 0.13 for g in gaps), waits
    # Peeking takes nothing.
    assert first.reserve(-1).granted is False
    assert second.reserve(-1).wait_s == pytest.approx(first.reserve(-1).wait_s, abs=0.05)


def test_postgresql_gate_admits_the_limit_per_second_across_limiters(on_rabbitmq: str) -> None:
    from tasks.coordination.rate_limit import GATE_WINDOW_S, RateLimiter

    name = f"gate-{uuid.uuid4().hex[:6]}"
    a = RateLimiter(name, 3, redis_url=None)
    b = RateLimiter(name, 3, redis_url=None)
    started = time.monotonic()
    for lim in (a, b, a):  # the first call also makes the row, and is counted
        with lim.call():
            pass
    assert time.monotonic() - started < 0.5
    with b.call():  # the fourth in the window waits for the first to leave it
        assert time.monotonic() - started >= GATE_WINDOW_S - 0.1


def _second_call_waits_for_the_first_answer(a, b) -> None:
    """With a limit of one a second: `b` leaves a window after `a`'s answer, not its departure."""
    from tasks.coordination.rate_limit import GATE_WINDOW_S

    entered: list[float] = []

    def second() -> None:
        with b.call():
            entered.append(time.monotonic())

    with a.call():
        other = threading.Thread(target=second)
        other.start()
        # A slow provider: the call is out longer than the window.
        time.sleep(GATE_WINDOW_S + 0.5)
        answered = time.monotonic()
    other.join(10)
    assert entered, "the second call never left"
    # The provider may have counted the first call at any moment until its
    # answer came back, so the second leaves no sooner than a window after it.
    assert entered[0] - answered >= GATE_WINDOW_S - 0.05, entered[0] - answered


def test_postgresql_gate_holds_a_place_while_a_call_is_out(on_rabbitmq: str) -> None:
    from tasks.coordination.rate_limit import RateLimiter

    name = f"held-{uuid.uuid4().hex[:6]}"
    _second_call_waits_for_the_first_answer(RateLimiter(name, 1, redis_url=None),
                                            RateLimiter(name, 1, redis_url=None))


def test_redis_gate_holds_a_place_while_a_call_is_out(redis_server) -> None:
    from tasks.coordination.rate_limit import RateLimiter

    name = f"held-{uuid.uuid4().hex[:6]}"
    a = RateLimiter(name, 1, redis_url=redis_server.url)
    assert a.backend == "redis"
    _second_call_waits_for_the_first_answer(a, RateLimiter(name, 1, redis_url=redis_server.url))


def test_redis_reserve_and_depart_takes_the_slot_and_the_gate_in_one_call(redis_server) -> None:
    from tasks.coordination.rate_limit import GATE_WINDOW_S, RateLimiter

    name = f"depart-{uuid.uuid4().hex[:6]}"
    # Two a second with a burst of five: slots are free at once for a while,
    # but the gate lets only two calls out in any window.
    a = RateLimiter(name, 2, redis_url=redis_server.url, burst=5)
    b = RateLimiter(name, 2, redis_url=redis_server.url, burst=5)
    started = time.monotonic()
    first, second = a.reserve_and_depart(), b.reserve_and_depart()
    assert (first.wait_s, second.wait_s) == (0.0, 0.0)
    assert first.departed and second.departed and first.departed != second.departed
    # Both are out, in the gate's log under their own tokens, until they land.
    with a.call(departed=first.departed), b.call(departed=second.departed):
        pass
    assert time.monotonic() - started < 0.5
    # The third slot is now too, but the gate is full: not admitted here,
    # and the call then waits at the gate for the window to move on.
    third = a.reserve_and_depart()
    assert third.granted and third.wait_s == 0.0 and third.departed is None
    with a.call(departed=third.departed):
        assert time.monotonic() - started >= GATE_WINDOW_S - 0.1
    # A slot in the future is reserved, and the gate is left to the call.
    slow = RateLimiter(f"{name}-slow", 1, redis_url=redis_server.url)
    assert slow.reserve_and_depart().departed is not None
    later = slow.reserve_and_depart()
    assert later.wait_s > 0.9 and later.departed is None


def test_reserve_and_depart_without_redis_also_departs(on_rabbitmq: str) -> None:
    from tasks.coordination.rate_limit import RateLimiter

    lim = RateLimiter(f"depart-pg-{uuid.uuid4().hex[:6]}", 5, redis_url=None)
    reservation = lim.reserve_and_depart()
    assert reservation.granted and reservation.departed is not None
    with lim.call(departed=reservation.departed):
        pass


def test_process_gate_holds_a_place_while_a_call_is_out() -> None:
    from tasks.coordination.rate_limit import RateLimiter

    # One limiter, two threads: the in-process gate is per limiter object.
    lim = RateLimiter("held-local", 1, redis_url=None, use_database=False)
    assert lim.backend == "process"
    _second_call_waits_for_the_first_answer(lim, lim)


def test_a_dead_callers_place_frees_after_the_hold(on_rabbitmq: str) -> None:
    from tasks.coordination.rate_limit import GATE_WINDOW_S, RateLimiter

    name = f"dead-{uuid.uuid4().hex[:6]}"
    # A call out whose worker dies never lands: its place is held for the
    # provider timeout and a little more, not for ever.
    dead = RateLimiter(name, 1, redis_url=None, call_timeout_s=0.2)
    assert dead._try_depart("never-lands") == 0
    started = time.monotonic()
    with RateLimiter(name, 1, redis_url=None, call_timeout_s=0.2).call():
        waited = time.monotonic() - started
    assert dead.hold_s + GATE_WINDOW_S - 0.3 <= waited <= dead.hold_s + GATE_WINDOW_S + 1.5


def test_provider_retry_after_defers_every_limiter(on_rabbitmq: str) -> None:
    from tasks.coordination.rate_limit import RateLimiter

    name = f"defer-{uuid.uuid4().hex[:6]}"
    a = RateLimiter(name, 100, redis_url=None)
    b = RateLimiter(name, 100, redis_url=None)
    a.reserve(math.inf)
    a.defer(3.0)
    assert b.reserve(math.inf).wait_s > 2.5


def test_tick_marker_and_wakeup_coalesce_in_postgresql(on_rabbitmq: str) -> None:
    from db import coordination
    from tasks.database import autocommit_engine

    name = f"marker-{uuid.uuid4().hex[:6]}"
    with autocommit_engine().connect() as conn:
        assert coordination.marker_set_if_absent(conn, name, 60) is True
        assert coordination.marker_set_if_absent(conn, name, 60) is False
        coordination.marker_clear(conn, name)
        assert coordination.marker_set_if_absent(conn, name, 60) is True
        wake = f"wake-{uuid.uuid4().hex[:6]}"
        assert coordination.wake_arm(conn, wake, 30) is True
        # One armed sooner is still ahead: a later one is not needed.
        assert coordination.wake_arm(conn, wake, 40) is False
        # A sooner one is.
        assert coordination.wake_arm(conn, wake, 5) is True


def test_healthz_names_the_coordination_store(relay_client) -> None:  # noqa: F811
    body = relay_client().get("/healthz").json()
    assert body["coordination"] == "redis"
