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
