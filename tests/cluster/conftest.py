"""Fixtures of the cluster scenarios: a fresh cluster of namespaced hosts per test.

Select them with `pytest -m cluster tests/cluster`; they need root (network
namespaces) and skip, saying so, without it. REGNOTIFY_CLUSTER_FULL=1 runs
the issue's full backlog (3,000 texts + 3,000 e-mails) instead of CI's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import netns
from tests.cluster.harness import Cluster

FULL = os.environ.get("REGNOTIFY_CLUSTER_FULL") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: hosts as network namespaces (root); pytest -m cluster tests/cluster")


@pytest.fixture()
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Empty hosts (ctl, pg, broker, w1-w3, relay, prov); services are started by the test."""
    why = netns.usable()
    if why:
        pytest.skip(why)
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            for name in ("relay", "worker-w1", "worker-w2", "worker-w3"):
                print(f"--- {name} ---\n{c.log(name)[-3000:]}")
        c.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
