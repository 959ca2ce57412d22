"""db.as_caller.run_as_caller: the caller's transaction in one round trip, on the async pool.

The round trip is counted on the wire: libpq's protocol trace of the
connection shows how many Sync messages the client sent (one per round
trip in pipeline mode).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import psycopg
import pytest

from db.as_caller import CallerPool, Statement, run_as_caller
from db.errors import CallerRoleRefused, DatabaseUnavailable
from tests.pg import new_registration

CLAIMS = {"sub": "u", "role": "authenticated", "phone": "15551230001"}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _with_pool(url: str, work: Any, size: int = 2) -> Any:
    pool = CallerPool(url, size=size)
    await pool.open()
    try:
        return await work(pool)
    finally:
        await pool.close()


def test_runs_as_the_caller_and_rls_decides(clean_db, conn):
    mine = new_registration(conn, customer_phone="+15551230001")
    new_registration(conn, customer_phone="+15559870002")

    async def work(pool: CallerPool) -> Any:
        first = await run_as_caller(pool, CLAIMS, [
            Statement("SELECT current_user AS who"),
            Statement("SELECT current_setting('request.jwt.claims') AS claims"),
            Statement("SELECT id FROM registrations")])
        # The same pooled connection afterwards: the login role, no claims.
        async with pool.connection() as c:
            cur = await c.execute("SELECT current_user, "
                                  "current_setting('request.jwt.claims', true)")
            after = await cur.fetchone()
        return first, after

    (who, claims, ids), after = run(_with_pool(clean_db, work, size=1))
    assert who == [{"who": "authenticated"}]
    assert json.loads(claims[0]["claims"]) == CLAIMS
    assert [str(r["id"]) for r in ids] == [mine]
    assert after[0] != "authenticated" and after[1] in (None, "")


def test_commits_on_success_and_rolls_back_on_error(clean_db, conn):
    reg = new_registration(conn, customer_phone="+15551230001")
    update = "UPDATE registrations SET notification_pref = %(pref)s WHERE id = %(id)s"

    async def work(pool: CallerPool) -> Any:
        await run_as_caller(pool, CLAIMS, [Statement(update, {"pref": "sms", "id": reg})])
        with pytest.raises(psycopg.errors.DivisionByZero):
            await run_as_caller(pool, CLAIMS, [Statement(update, {"pref": "none", "id": reg}),
                                               Statement("SELECT 1 / 0")])
        # The connection went back clean and serves the next caller.
        return await run_as_caller(pool, CLAIMS, [Statement("SELECT 2 AS two")])

    assert run(_with_pool(clean_db, work, size=1)) == [[{"two": 2}]]
    assert conn.execute("SELECT notification_pref FROM registrations WHERE id = %s",
                        (reg,)).fetchone()["notification_pref"] == "sms"


@pytest.mark.parametrize("role", ["postgres", None, "authenticated; DROP TABLE x", "admin"])
def test_other_roles_are_refused(clean_db, role):
    async def work(pool: CallerPool) -> Any:
        return await run_as_caller(pool, {"role": role}, [Statement("SELECT 1")])

    with pytest.raises(CallerRoleRefused):
        run(_with_pool(clean_db, work))


def test_a_login_that_cannot_become_the_role_is_a_setup_error(clean_db, conn):
    conn.execute("DROP ROLE IF EXISTS relay_without_grants")
    conn.execute("CREATE ROLE relay_without_grants LOGIN PASSWORD 'pw'")
    url = clean_db.replace("postgres@", "relay_without_grants:pw@", 1)
    assert "relay_without_grants" in url

    async def work(pool: CallerPool) -> Any:
        return await run_as_caller(pool, CLAIMS, [Statement("SELECT 1")])

    try:
        with pytest.raises(DatabaseUnavailable, match="GRANT authenticated"):
            run(_with_pool(url, work))
    finally:
        conn.execute("DROP ROLE relay_without_grants")


def test_role_claims_query_and_commit_are_one_round_trip(clean_db, conn):
    new_registration(conn, customer_phone="+15551230001")
    trace = Path(tempfile.mkdtemp(prefix="regnotify-trace-")) / "wire.txt"

    async def work(pool: CallerPool) -> Any:
        with trace.open("w") as out:
            # The pool holds one connection: trace it, give it back, and the
            # request gets that same connection.
            async with pool.connection() as c:
                c.pgconn.trace(out.fileno())
                traced = c
            try:
                return await run_as_caller(pool, CLAIMS, [
                    Statement("SELECT id FROM registrations"),
                    Statement("SELECT count(*) AS n FROM registration_stages")])
            finally:
                traced.pgconn.untrace()

    rows = run(_with_pool(clean_db, work, size=1))
    assert [len(r) for r in rows] == [1, 1]
    sent = [line.split("\t") for line in trace.read_text().splitlines()]
    sent = [fields[3].split(" ")[0] for fields in sent if len(fields) > 3 and fields[1] == "F"]
    # The role and claims, the two queries, then one Sync (which commits):
    # one round trip. (psycopg may send a Flush after it, which the server
    # answers with nothing.)
    assert sent.count("Sync") == 1, sent
    assert sent.count("Execute") == 3, sent
    assert all(kind == "Flush" for kind in sent[sent.index("Sync") + 1:]), sent
