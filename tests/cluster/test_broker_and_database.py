"""The broker's host, then PostgreSQL's, cut off during a drain: everything recovers on its own."""

from __future__ import annotations

import time

import pytest

from tests.cluster import ledger
from tests.cluster.harness import wait_until
from tests.cluster.scenario import seed_backlog, sent_by_host, start_stack, wait_drained

pytestmark = [pytest.mark.cluster, pytest.mark.process, pytest.mark.xdist_group("cluster"),
              pytest.mark.timeout(300)]

REGISTRATIONS = 150
TWILIO_LATENCY = 0.2
#: How long a change made after the broker's return may take to be sent
#: (seen: 1-2 s; the relay's publishes are bounded, see tasks/broker/tick_publisher.py).
AFTER_S = 120


def _flowing(cluster, count: int = 40) -> None:
    wait_until(lambda: cluster.twilio.accepted_count() >= count, 120, "texts flowing")


def _processes(cluster):
    yield "relay", cluster.hosts["relay"].procs["relay"]
    for role in ("w1", "w2", "w3"):
        yield f"worker-{role}", cluster.hosts[role].procs[f"worker-{role}"]


def _relay_ticks(cluster) -> list[str]:
    return [line for line in cluster.log("relay").splitlines()
            if "tick" in line or "WARNING" in line or "publish" in line]


def _assert_clean(cluster, what: str, took: float, extra: int = 0) -> None:
    result = ledger.take(cluster)
    print(result.row(), f"{what}: drained {took:.1f}s after the heal; "
          f"by host {sent_by_host(cluster)}")
    result.assert_clean()
    assert result.sent == 2 * (REGISTRATIONS + extra)
    assert cluster.twilio.accepted_count() == REGISTRATIONS + extra
    assert cluster.resend.accepted_count() == REGISTRATIONS + extra


@pytest.mark.timeout(480)
def test_broker_host_cut_off_30s_workers_and_relay_recover(cluster):
    start_stack(cluster, twilio_latency=TWILIO_LATENCY)
    seed_backlog(cluster, REGISTRATIONS)
    _flowing(cluster)

    cluster.cut("broker")
    time.sleep(30)
    during = cluster.twilio.accepted_count()
    cluster.heal("broker")
    # No restart, no help: the same processes pick up where they were.
    took = wait_drained(cluster, 200)
    assert during < REGISTRATIONS, "the backlog was over before the broker came back"
    _assert_clean(cluster, "broker cut 30 s", took)
    for name, proc in _processes(cluster):
        assert proc.poll() is None, f"{name} exited:\n{cluster.log(name)[-3000:]}"

    # The relay's ticks reach the broker again: a new change is sent without help.
    seed_backlog(cluster, 3, prefix="+1555800", mark="after")
    try:
        after = wait_drained(cluster, AFTER_S)
    finally:
        # What the relay did with its ticks since the cut, for a slow or failed step.
        print("relay, since the cut:", *_relay_ticks(cluster)[-40:], sep="\n  ")
    _assert_clean(cluster, f"broker cut 30 s, a change after it sent in {after:.0f} s",
                  took, extra=3)


def test_postgresql_host_cut_off_10s_during_a_drain(cluster):
    start_stack(cluster, twilio_latency=TWILIO_LATENCY)
    seed_backlog(cluster, REGISTRATIONS)
    _flowing(cluster)

    cluster.cut("pg")
    time.sleep(10)
    cluster.heal("pg")
    took = wait_drained(cluster, 200)
    # Writes held up by the cut land with their TCP retransmissions: let them.
    time.sleep(5)
    _assert_clean(cluster, "PostgreSQL cut 10 s", took)
    for role in ("w1", "w2", "w3"):
        assert cluster.hosts[role].procs[f"worker-{role}"].poll() is None
