"""The names tests/conftest.py orders and selects by still name tests.

A renamed or moved test would otherwise silently lose its place at the front
of a parallel run, or slip into `scripts/test --fast`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import FAST, LONGEST_FIRST, PROCESS_MODULES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(set(LONGEST_FIRST) | PROCESS_MODULES))
def test_every_ordered_or_selected_name_is_a_test(name: str) -> None:
    module, _, function = name.partition("::")
    path = ROOT / module
    assert path.exists(), f"{module} is gone: update tests/conftest.py"
    if function:
        assert re.search(rf"^def {re.escape(function)}\(", path.read_text(), re.M), (
            f"{name} is gone: update tests/conftest.py")


def test_the_longest_come_first_once_each() -> None:
    assert len(LONGEST_FIRST) == len(set(LONGEST_FIRST))


def test_scripts_test_fast_selects_by_the_expression_conftest_knows() -> None:
    # conftest skips importing whole `process` modules only for this exact expression.
    assert f'-m "{FAST}"' in (ROOT / "scripts" / "test").read_text()


def test_this_run_is_longest_first_and_marks_what_starts_processes(
        request: pytest.FixtureRequest) -> None:
    # The items of the run this test is part of, as conftest ordered and marked them
    # (under xdist: each worker's copy of the whole run, in the same order).
    items = request.session.items
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def place(item: pytest.Item) -> int:
        module, function = item.nodeid.split("::", 1)[0], item.nodeid.split("[", 1)[0]
        return rank.get(function, rank.get(module, len(rank)))

    places = [place(item) for item in items]
    assert places == sorted(places)
    for item in items:
        module, function = item.nodeid.split("::", 1)[0], item.nodeid.split("[", 1)[0]
        listed = (module in PROCESS_MODULES or function in PROCESS_MODULES
                  or module.startswith("tests/reliability/"))
        if listed or item.get_closest_marker("e2e"):
            assert item.get_closest_marker("process"), item.nodeid
    assert not request.node.get_closest_marker("process")
