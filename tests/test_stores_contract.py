"""Every coordination store keeps one contract: each primitive, and what is built on them.

Run against every engine in tasks.coordination.stores.STORES (a real Redis,
the real test database, this process), so a new engine is checked by being
listed there. Times are loose: the machine is shared.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy

from tasks.coordination.store import CoordinationStore, Gate, Spacing, StoreUnavailable
from tasks.coordination.stores import STORES, choose_store
from tests.conftest import reset_process_state

AMQP = "amqp://guest:guest@127.0.0.1:5672/unused"
#: The engines whose state two processes share (two instances stand for two processes).
SHARED = {"redis", "postgresql"}


@pytest.fixture(params=[engine.kind for engine in STORES])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[CoordinationStore]:
    """One engine, chosen from settings as a deployment has them."""
    kind = request.param
    if kind == "redis":
        monkeypatch.setenv("COORDINATION_REDIS_URL", request.getfixturevalue("redis_server").url)
    else:
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("clean_db"))
        monkeypatch.setenv("CELERY_BROKER_URL", AMQP)
        monkeypatch.delenv("COORDINATION_REDIS_URL", raising=False)
    reset_process_state()
    chosen = choose_store(database=kind != "process")
    assert chosen.kind == kind, f"no setting chooses the {kind} store"
    yield chosen
    monkeypatch.undo()
    reset_process_state()


def _key(what: str) -> str:
    return f"regnotify:test:{what}:{uuid.uuid4().hex[:8]}"


def _twin(store: CoordinationStore) -> CoordinationStore:
    """A second instance over the same settings: another process."""
    return choose_store(database=store.kind != "process")


# ── Slots ───────────────────────────────────────────────────────────────────

def test_slots_are_an_interval_apart_and_a_peek_takes_none(store: CoordinationStore) -> None:
    key, spacing = _key("slot"), Spacing(1.0)
    waits = [store.slot_reserve(key, spacing, math.inf)[1] for _ in range(4)]
    assert waits[0] == pytest.approx(0, abs=0.05)
    assert all(abs(b - a - 1.0) < 0.3 for a, b in itertools.pairwise(waits)), waits
    granted, wait = store.slot_reserve(key, spacing, -1)
    assert not granted and wait == pytest.approx(waits[-1] + 1.0, abs=0.3)
    granted, again = store.slot_reserve(key, spacing, 0.5)  # too far: still not taken
    assert not granted and again == pytest.approx(wait, abs=0.3)
    assert store.slot_reserve(key, spacing, math.inf)[1] == pytest.approx(wait, abs=0.3)


def test_a_tolerance_lets_a_burst_through(store: CoordinationStore) -> None:
    key, spacing = _key("burst"), Spacing(1.0, tolerance_s=2.0)
    waits = [store.slot_reserve(key, spacing, math.inf)[1] for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(1.0, abs=0.3)


def test_defer_holds_every_slot_back(store: CoordinationStore) -> None:
    key, spacing = _key("defer"), Spacing(0.01)
    store.slot_reserve(key, spacing, math.inf)
    store.slot_defer(key, 3.0)
    store.slot_defer(key, 1.0)  # a shorter wait never brings slots forward
    assert store.slot_reserve(key, spacing, math.inf)[1] > 2.5


def test_shared_stores_hand_out_one_sequence(store: CoordinationStore) -> None:
    if store.kind not in SHARED:
        pytest.skip("a store of one process")
    key, spacing, other = _key("seq"), Spacing(1.0), _twin(store)
    waits = [s.slot_reserve(key, spacing, math.inf)[1] for s in (store, other, store)]
    assert waits[1] == pytest.approx(1.0, abs=0.3) and waits[2] == pytest.approx(2.0, abs=0.3)


# ── The gate ────────────────────────────────────────────────────────────────

def test_the_gate_admits_its_limit_within_a_window(store: CoordinationStore) -> None:
    key, gate = _key("gate"), Gate(limit=2, window_s=0.6)
    assert [store.gate_depart(key, gate, t) for t in ("a", "b")] == [0.0, 0.0]
    wait = store.gate_depart(key, gate, "c")
    assert 0 < wait <= 0.6
    time.sleep(wait + 0.05)
    assert store.gate_depart(key, gate, "c") == 0.0


def test_an_entry_out_holds_its_place_until_it_lands(store: CoordinationStore) -> None:
    key, gate = _key("hold"), Gate(limit=1, window_s=0.4, hold_s=3.0)
    assert store.gate_depart(key, gate, "out") == 0.0
    assert store.gate_depart(key, gate, "next") > 2.5  # held for its hold and the window
    store.gate_landed(key, "never-admitted")  # an unknown entry changes nothing
    assert store.gate_depart(key, gate, "next") > 2.5
    store.gate_landed(key, "out")
    wait = store.gate_depart(key, gate, "next")
    assert 0 < wait <= 0.4
    time.sleep(wait + 0.05)
    assert store.gate_depart(key, gate, "next") == 0.0


def test_reserve_and_depart_takes_the_gate_only_with_a_slot_that_is_now(
        store: CoordinationStore) -> None:
    slot, gate_key = _key("rd"), _key("rd-gate")
    gate = Gate(limit=1, window_s=1.0, hold_s=5.0)
    assert store.reserve_and_depart(slot, Spacing(0.5, 5.0), gate_key, gate, "one") == (
        True, 0.0, True)
    # The next slot is now too, but the gate is full: reserved, not departed.
    assert store.reserve_and_depart(slot, Spacing(0.5, 5.0), gate_key, gate, "two") == (
        True, 0.0, False)
    store.gate_landed(gate_key, "one")
    # A slot in the future is reserved and the gate left alone.
    later = _key("rd-later")
    store.reserve_and_depart(later, Spacing(1.0), _key("g"), gate, "x")
    granted, wait, departed = store.reserve_and_depart(later, Spacing(1.0), _key("g"), gate, "y")
    assert granted and wait == pytest.approx(1.0, abs=0.3) and not departed


# ── Markers, wake-ups, counters ─────────────────────────────────────────────

def test_a_marker_is_set_once_until_it_expires_or_is_forgotten(store: CoordinationStore) -> None:
    key = _key("marker")
    assert store.marker_set(key, 60) is True
    assert store.marker_set(key, 60) is False
    assert store.marker_set(key, 60, overwrite=True) is True
    store.forget(key)
    assert store.marker_set(key, 0.3) is True
    time.sleep(0.45)
    assert store.marker_set(key, 60) is True


def test_a_wake_up_is_armed_only_when_sooner(store: CoordinationStore) -> None:
    key = _key("wake")
    assert store.wake_arm(key, 30) is True
    assert store.wake_arm(key, 40) is False
    assert store.wake_arm(key, 0.3) is True
    time.sleep(0.45)  # the armed one has passed: any new one is needed
    assert store.wake_arm(key, 30) is True


def test_forget_empties_a_gate(store: CoordinationStore) -> None:
    key, gate = _key("forget"), Gate(limit=1, window_s=60)
    assert store.gate_depart(key, gate, "a") == 0.0
    assert store.gate_depart(key, gate, "b") > 0
    store.forget(key)
    assert store.gate_depart(key, gate, "b") == 0.0


def test_counters_add_up_by_group(store: CoordinationStore) -> None:
    group, other = _key("counters"), _key("counters")
    store.counters_add({group: {"sent:a": 2, "sum": 0.25}, other: {"sent:a": 1}})
    store.counters_add({group: {"sent:a": 3, "sum": 0.5}})
    assert store.counters_read(group) == {"sent:a": 5.0, "sum": 0.75}
    assert store.counters_read(other) == {"sent:a": 1.0}
    assert store.counters_read(_key("never")) == {}
    store.forget(group)
    assert store.counters_read(group) == {} and store.counters_read(other) == {"sent:a": 1.0}


# ── What is built on them ───────────────────────────────────────────────────

def test_the_limiter_on_every_store(store: CoordinationStore) -> None:
    from tasks.coordination.rate_limit import GATE_WINDOW_S, RateLimiter

    # Two a second with a burst of five: slots are free at once for a while,
    # but the gate lets only two calls out in any window.
    lim = RateLimiter(_key("lim"), 2, redis_url=None, burst=5, store=store)
    assert lim.backend == store.kind
    started = time.monotonic()
    first, second = lim.reserve_and_depart(), lim.reserve_and_depart()
    assert (first.wait_s, second.wait_s) == (0.0, 0.0)
    assert first.departed and second.departed and first.departed != second.departed
    with lim.call(departed=first.departed), lim.call(departed=second.departed):
        pass
    third = lim.reserve_and_depart()
    assert third.granted and third.wait_s == 0.0 and third.departed is None
    with lim.call(departed=third.departed):
        assert time.monotonic() - started >= GATE_WINDOW_S - 0.1
    lim.defer(5.0)  # no slot sooner, less the burst's tolerance
    assert lim.reserve(math.inf).wait_s > 4.5 - lim.tolerance
    assert lim.reserve(1.0).granted is False


def test_the_wakeup_on_every_store(store: CoordinationStore) -> None:
    from tasks.broker import wakeup
    from tasks.broker.app import app

    assert not app.conf.task_always_eager
    wakeup.store.use(store)
    try:
        store.forget(wakeup.PENDING_KEY)
        store.forget(wakeup.WAKE_KEY)
        assert wakeup.should_enqueue_tick() is True
        assert wakeup.should_enqueue_tick() is False  # coalesced into the waiting run
        wakeup.run_started()
        assert wakeup.should_enqueue_tick() is True
        assert wakeup.claim_wakeup(30.0) == 30.0
        assert wakeup.claim_wakeup(40.0) is None
        assert wakeup.claim_wakeup(10.0) == 10.0
    finally:
        store.forget(wakeup.PENDING_KEY)
        store.forget(wakeup.WAKE_KEY)
        wakeup.reset_client()


def test_the_sign_in_counters_on_every_store(store: CoordinationStore) -> None:
    from tasks.portal.limits import SigninCounters
    from tasks.settings import Settings

    counters = SigninCounters(Settings(), lambda: None, uuid.uuid4().bytes, store=store)
    assert counters.backend == store.kind
    assert [counters.hit("send", "+15550001", 3, 60) for _ in range(4)] == [
        True, True, True, False]
    assert counters.hit("send", "+15550002", 3, 60)  # another number, its own window
    counters.clear("send", "+15550001")
    assert counters.hit("send", "+15550001", 3, 60)


def test_the_worker_counters_on_every_store(store: CoordinationStore) -> None:
    from tasks.coordination import worker_metrics

    worker_metrics.store.use(store)
    try:
        for key in ("calls", "queue_runs", "latency:console"):
            store.forget(f"regnotify:metrics:{key}")
        worker_metrics.record_provider_call("console", "sent", 0.03)
        worker_metrics.record_provider_call("console", "sent", 2.0)
        worker_metrics.record_queue_run("tick")
        figures = worker_metrics.read()  # flushes first
        assert figures is not None
        assert figures.calls == {"console:sent": 2} and figures.queue_runs == {"tick": 1}
        (latency,) = [h for h in figures.latency if h.provider == "console"]
        assert latency.count == 2 and latency.sum == pytest.approx(2.03)
        assert dict(latency.buckets)[0.05] == 1 and dict(latency.buckets)[2.5] == 2
    finally:
        worker_metrics.reset_client()


# ── A store that does not answer ────────────────────────────────────────────

def _unreachable(kind: str) -> CoordinationStore:
    from tasks.local.embedded_postgres import free_port

    port = free_port()
    if kind == "redis":
        return choose_store(redis_url=f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
    engine = sqlalchemy.create_engine(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none",
                                      connect_args={"connect_timeout": 1})
    return choose_store(redis_url=None, database=lambda: engine)


@pytest.mark.parametrize("kind", sorted(SHARED))
def test_an_unreachable_store_says_so_and_the_limiter_carries_on(kind: str) -> None:
    from tasks.coordination.rate_limit import RateLimiter

    dead = _unreachable(kind)
    assert dead.kind == kind
    for primitive in (lambda: dead.slot_reserve("k", Spacing(1.0), 1.0),
                      lambda: dead.gate_depart("k", Gate(1, 1.0), "t"),
                      lambda: dead.marker_set("k", 1.0),
                      lambda: dead.counters_read("k")):
        with pytest.raises(StoreUnavailable):
            primitive()
    # The limiter limits in this process meanwhile: slots still an interval apart.
    lim = RateLimiter("dead", 1, redis_url=None, store=dead)
    waits = [lim.reserve(math.inf).wait_s for _ in range(2)]
    assert waits[0] == 0.0 and waits[1] == pytest.approx(1.08, abs=0.3)
    with lim.call():
        pass
