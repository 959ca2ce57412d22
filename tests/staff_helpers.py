"""Shared by the staff console's tests: members that do not outlive a test, staff claims.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.pg import connect


@pytest.fixture(autouse=True)
def staff_members_emptied(clean_db: str) -> Iterator[None]:
    # conftest's clean_db empties the tables it knows; staff_members is new
    # (migration 21) and referenced by nothing, so it is emptied here.
    yield
    with connect(clean_db) as c:
        c.execute("TRUNCATE staff_members, staff_actions RESTART IDENTITY")


def staff_claims(email: str, iss: str = "regnotify") -> dict[str, Any]:
    return {"sub": "s-" + email, "role": "authenticated", "email": email,
            "app_metadata": {"role": "admin"}, "iss": iss, "aud": "authenticated"}
