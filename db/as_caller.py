"""Run SQL as the API's caller, the way PostgREST does, so row-level security decides.

`run_as_caller` is the relay's path: one round trip on an async pool (below).
`as_caller` is the synchronous form for SQLAlchemy connections. Either way, one
transaction: `SET LOCAL ROLE` to the role the verified claims name, then
`request.jwt.claims` (what auth.jwt() reads), then the caller's queries. Both
settings end with the transaction, so the pooled connection goes back as the
login role it came out as.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Connection, Engine, text

from db.connector import briefly_away, family_error, family_errors
from db.errors import CallerNotAllowed, CallerRoleRefused, DatabaseUnavailable

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
            with family_errors():
                conn.execute(text(f"SET LOCAL ROLE {role}"))
        except CallerNotAllowed:
            # The login role is not a member of the API roles: a setup problem
            # to fix once, not the caller's fault.
            raise DatabaseUnavailable(
                f"the database login cannot SET ROLE {role}: run `GRANT authenticated, "
                "service_role TO <the relay's login role>` (see docs/api.md, "
                "\"The relay's database login\")") from None
        conn.execute(text("SELECT set_config('request.jwt.claims', :claims, true)"),
                     {"claims": json.dumps(dict(claims))})
        yield conn


# ── The API's path: one round trip per request ───────────────────────────────
#
# The role and the claims, then the caller's statements, go out together in
# one psycopg pipeline and come back after one Sync: a single network round
# trip, as PostgREST does it, instead of one per statement. Everything before
# a Sync is one implicit transaction (the extended query protocol: the Sync
# commits it, or rolls it back when a statement failed), so set_config's
# `is_local` settings end with it, exactly as after an explicit BEGIN ...
# COMMIT, which would cost two more statements per request (a third of the
# relay's CPU for /api/me; docs/relay-performance.md). The role is a bind
# parameter of set_config('role', ...) here (the same setting SET LOCAL ROLE
# makes), still only one of CALLER_ROLES.

_SETTINGS_SQL = ("SELECT set_config('role', %(role)s, true), "
                 "set_config('request.jwt.claims', %(claims)s, true)")


@dataclass(frozen=True)
class Statement:
    """One statement of a caller's transaction: SQL with psycopg `%(name)s` parameters."""

    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)


Rows = list[dict[str, Any]]


def checked_role(claims: Mapping[str, Any]) -> str:
    """The claims' role when it is one the API runs as; CallerRoleRefused otherwise."""
    role = claims.get("role")
    if role not in CALLER_ROLES:
        raise CallerRoleRefused(
            f"role {role!r} is not one of {', '.join(CALLER_ROLES)}: the API runs no other")
    return str(role)


def _role_refused(role: str) -> DatabaseUnavailable:
    # The login role is not a member of the API roles: a setup problem
    # to fix once, not the caller's fault.
    return DatabaseUnavailable(
        f"the database login cannot SET ROLE {role}: run `GRANT authenticated, "
        "service_role TO <the relay's login role>` (see README, The API)")


class CallerPool:
    """Login-role connections for the API's transactions, on psycopg's AsyncConnectionPool.

    The pool belongs to the event loop that opened it (the server's, in the
    app's lifespan). A request on any other loop (a test client that runs no
    lifespan) gets a connection of its own, closed after the request.
    A pooled connection idle for longer than `ping_after_idle_s` is checked
    before use (as db.connection.PING_AFTER_IDLE_S does for the engines), so a
    restarted server costs no request an error; a busy pool pings nothing.
    """

    def __init__(self, database_url: str, *, size: int, connect_timeout_s: int = 2,
                 application_name: str = "regnotify-relay-api",
                 ping_after_idle_s: float = 1.0) -> None:
        from db.connection import libpq_url

        self.size = size
        self._url = libpq_url(database_url)
        self._kwargs: dict[str, Any] = {
            "autocommit": True, "connect_timeout": connect_timeout_s,
            "application_name": application_name}
        self._timeout = float(max(connect_timeout_s, 1)) * 2
        self._ping_after_idle_s = ping_after_idle_s
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle_since: dict[int, float] = {}

    async def open(self) -> None:
        """Open the pool in the running loop (the app's lifespan)."""
        if self._pool is not None:
            return
        self._pool = AsyncConnectionPool(
            self._url, kwargs=self._kwargs, min_size=min(2, self.size), max_size=self.size,
            open=False, check=self._check, reset=self._returned, timeout=self._timeout,
            name="regnotify-relay-api")
        self._loop = asyncio.get_running_loop()
        # wait=False: a database that is down at start must not stop the relay
        # from serving /healthz (which then says so).
        await self._pool.open(wait=False)

    async def close(self) -> None:
        pool, self._pool, self._loop = self._pool, None, None
        if pool is not None:
            await pool.close()

    async def _check(self, conn: AsyncConnection) -> None:
        idle = time.monotonic() - self._idle_since.get(id(conn), 0.0)
        if idle > self._ping_after_idle_s:
            await conn.execute("")  # an empty query: the cheapest round trip

    async def _returned(self, conn: AsyncConnection) -> None:
        if len(self._idle_since) > 4 * self.size:
            self._idle_since.clear()  # ids of connections long closed; the live ones get pinged
        self._idle_since[id(conn)] = time.monotonic()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A login-role connection in autocommit mode: pooled when this loop opened the pool."""
        pool = self._pool
        if pool is not None and self._loop is asyncio.get_running_loop():
            async with pool.connection() as conn:
                yield conn
            return
        conn = await AsyncConnection.connect(self._url, **self._kwargs)
        try:
            yield conn
        finally:
            await conn.close()


async def run_as_caller(pool: CallerPool, claims: Mapping[str, Any],
                        statements: Sequence[Statement]) -> list[Rows]:
    """Run `statements` in one transaction as the caller, in one round trip; their rows.

    Committed when every statement succeeded; rolled back otherwise, and the
    first error raised: psycopg's as it is (edges map it with
    db.connector.family_errors), or DatabaseUnavailable when the login cannot
    become the role.
    """
    role = checked_role(claims)
    async with pool.connection() as conn:
        cursors: list[AsyncCursor[dict[str, Any]]] = []
        setting = conn.cursor(row_factory=dict_row)
        try:
            # Leaving the block sends the one Sync and reads every answer.
            async with conn.pipeline():
                await setting.execute(_SETTINGS_SQL, {
                    "role": role, "claims": json.dumps(dict(claims))})
                for statement in statements:
                    cur = conn.cursor(row_factory=dict_row)
                    await cur.execute(statement.sql, dict(statement.params))
                    cursors.append(cur)
        except Exception as exc:
            problem = family_error(exc)
            if problem is None or conn.closed or briefly_away(exc):
                raise  # not the database's answer, or the connection is gone
            # The Sync rolled the implicit transaction back; this is a no-op
            # then, and a safety net should a caller's statement have opened one.
            await conn.rollback()
            if isinstance(problem, CallerNotAllowed) and setting.pgresult is None:
                raise _role_refused(role) from None
            raise
        return [await cur.fetchall() if cur.description else [] for cur in cursors]
