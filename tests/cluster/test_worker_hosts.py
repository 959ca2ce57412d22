"""A worker host cut off mid-sends, or killed outright: its deliveries finish elsewhere, once."""

from __future__ import annotations

import time

import pytest

from tests.cluster import ledger
from tests.cluster.harness import wait_until
from tests.cluster.scenario import (
    WORKER_HOSTS,
    seed_backlog,
    sent_by_host,
    start_stack,
    wait_drained,
)

pytestmark = [pytest.mark.cluster, pytest.mark.process, pytest.mark.xdist_group("cluster"),
              pytest.mark.timeout(300)]

REGISTRATIONS = 150
#: The lease is PROVIDER_TIMEOUT_S * 2 + 15 (tasks/sending/delivery_flow.py): 19 s here.
LEASE_S = 2 * 2 + 15
#: Re-dispatch what a lost host held soon after its lease lapses.
SWEEP_AFTER_S = "10"
#: Each send holds its provider call this long, so a cut lands on calls in flight.
TWILIO_LATENCY = 0.4


def _mid_sends(cluster) -> None:
    """Wait until texts are flowing and every worker host has sent some."""
    wait_until(lambda: cluster.twilio.accepted_count() >= 40
               and all(n > 0 for n in sent_by_host(cluster).values()),
               120, "texts flowing from every worker host")


def _others_swept(cluster, lost: str) -> bool:
    return any("sweep: re-dispatching" in cluster.log(f"worker-{role}")
               for role in WORKER_HOSTS if role != lost)


def test_worker_host_cut_off_longer_than_the_lease_sends_nothing_twice(cluster):
    start_stack(cluster, twilio_latency=TWILIO_LATENCY, SWEEP_AFTER_S=SWEEP_AFTER_S)
    seed_backlog(cluster, REGISTRATIONS)
    _mid_sends(cluster)

    cluster.cut("w1")
    cut_at = time.monotonic()
    # What w1 held is leased to it; past the lease the others take it over.
    wait_until(lambda: _others_swept(cluster, "w1"), LEASE_S + 60,
               "another host to re-dispatch what w1 held")
    time.sleep(max(0.0, LEASE_S + 6 - (time.monotonic() - cut_at)))
    cluster.heal("w1")

    took = wait_drained(cluster, 180)
    # w1 comes back with its calls and writes from before the cut: let them land.
    time.sleep(8)
    result = ledger.take(cluster)
    print(result.row(), f"drained {took:.1f}s after the heal; by host {sent_by_host(cluster)}")
    result.assert_clean()
    assert result.sent == 2 * REGISTRATIONS
    assert cluster.twilio.accepted_count() == REGISTRATIONS
    assert cluster.resend.accepted_count() == REGISTRATIONS
    assert cluster.hosts["w1"].procs["worker-w1"].poll() is None, "w1's worker died"


def test_worker_host_killed_outright_loses_nothing(cluster):
    start_stack(cluster, twilio_latency=TWILIO_LATENCY, SWEEP_AFTER_S=SWEEP_AFTER_S)
    seed_backlog(cluster, REGISTRATIONS)
    _mid_sends(cluster)

    assert cluster.kill_host("w2") >= 1  # every process in the host
    assert cluster.hosts["w2"].procs["worker-w2"].wait(10) == -9

    took = wait_drained(cluster, 180)
    result = ledger.take(cluster)
    print(result.row(), f"drained {took:.1f}s after the kill; by host {sent_by_host(cluster)}")
    result.assert_clean()
    assert result.sent == 2 * REGISTRATIONS
    assert cluster.twilio.accepted_count() == REGISTRATIONS
    assert cluster.resend.accepted_count() == REGISTRATIONS
