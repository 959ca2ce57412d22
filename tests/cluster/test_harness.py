"""The harness keeps its promises: nothing left behind, a cut is a cut, a heal heals."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.cluster import netns
from tests.cluster.harness import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.process, pytest.mark.xdist_group("cluster")]


@pytest.fixture(autouse=True)
def _root() -> None:
    why = netns.usable()
    if why:
        pytest.skip(why)


def _names() -> set[str]:
    return {line.split(" ")[0] for line in
            netns.ip("netns", "list").stdout.splitlines() if line.strip()}


def test_sweep_removes_only_namespaces_of_runs_that_are_gone():
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, ours = f"{netns.PREFIX}{dead.pid}xdead-a", f"{netns.PREFIX}{os.getpid()}xlive-a"
    netns.ip("netns", "add", stale)
    netns.ip("netns", "add", ours)
    try:
        removed = netns.sweep_stale()
        assert stale in removed
        assert stale not in _names()
        assert ours in _names()
    finally:
        netns.delete(stale)
        netns.delete(ours)


def test_close_removes_every_namespace_process_and_folder(tmp_path):
    cluster = Cluster(tmp_path, roles=("ctl", "a"))
    names = {h.ns for h in cluster.hosts.values()} | {cluster.switch}
    assert names <= _names()
    proc = cluster.spawn("a", "sleeper", [sys.executable, "-c", "import time; time.sleep(600)"])
    cluster.close()
    assert proc.poll() is not None
    assert not names & _names()
    assert not cluster.state.exists()


def _listen(addr: str) -> socket.socket:
    server = socket.socket()
    server.bind((addr, 7000))
    server.listen()
    return server


def _connects(addr: str) -> bool:
    try:
        socket.create_connection((addr, 7000), timeout=2).close()
        return True
    except OSError:
        return False


def test_cut_drops_packets_and_heal_restores_them(tmp_path):
    cluster = Cluster(tmp_path, roles=("ctl", "a"))
    try:
        server = netns.run_in(cluster.hosts["a"].ns, _listen, cluster.addr("a"))
        assert cluster.in_ctl(_connects, cluster.addr("a"))
        cluster.cut("a")
        assert not cluster.in_ctl(_connects, cluster.addr("a"))
        cluster.heal("a")
        assert cluster.in_ctl(_connects, cluster.addr("a"))
        server.close()
    finally:
        cluster.close()
