"""Run SQL as the API's caller, the way PostgREST does, so row-level security decides.

One transaction: `SET LOCAL ROLE` to the role the verified claims name, then
`request.jwt.claims` (what auth.jwt() reads), then the caller's queries. Both
settings end with the transaction, so the pooled connection goes back as the
login role it came out as.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from db.errors import CallerRoleRefused, DatabaseUnavailable

#: The only roles a request may become. Role names cannot be bind parameters,
#: so this list is also what keeps the SET ROLE statement a constant.
CALLER_ROLES = ("anon", "authenticated", "service_role")


@contextmanager
def as_caller(engine: Engine, claims: Mapping[str, Any]) -> Iterator[Connection]:
    """A connection in one transaction running as the caller; committed on success."""
    role = claims.get("role")
    if role not in CALLER_ROLES:
        raise CallerRoleRefused(
            f"role {role!r} is not one of {', '.join(CALLER_ROLES)}: the API runs no other")
    with engine.begin() as conn:
        try:
            conn.execute(text(f"SET LOCAL ROLE {role}"))
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != "42501":
                raise
            # The login role is not a member of the API roles: a setup problem
            # to fix once, not the caller's fault.
            raise DatabaseUnavailable(
                f"the database login cannot SET ROLE {role}: run `GRANT authenticated, "
                "service_role TO <the relay's login role>` (see docs/api.md, "
                "\"The relay's database login\")") from None
        conn.execute(text("SELECT set_config('request.jwt.claims', :claims, true)"),
                     {"claims": json.dumps(dict(claims))})
        yield conn
