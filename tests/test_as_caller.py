"""db.as_caller: one transaction as the caller's role with its claims, as PostgREST runs it."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from db.as_caller import as_caller
from db.connection import make_engine
from db.errors import CallerRoleRefused
from tests.pg import new_registration


@pytest.fixture()
def engine(clean_db):
    eng = make_engine(clean_db, pool_size=1)
    yield eng
    eng.dispose()


def test_runs_as_the_caller_and_rls_decides(engine, conn):
    mine = new_registration(conn, customer_phone="+15551230001")
    new_registration(conn, customer_phone="+15559870002")
    claims = {"sub": "u", "role": "authenticated", "phone": "15551230001"}
    with as_caller(engine, claims) as c:
        assert c.execute(text("SELECT current_user")).scalar() == "authenticated"
        assert json.loads(c.execute(text("SELECT current_setting('request.jwt.claims')"))
                          .scalar()) == claims
        assert [str(r) for r in c.execute(text("SELECT id FROM registrations")).scalars()] == [
            mine]
    # Both settings end with the transaction: the pooled connection is the login role again.
    with engine.connect() as c:
        assert c.execute(text("SELECT current_user")).scalar() != "authenticated"
        assert c.execute(text("SELECT current_setting('request.jwt.claims', true)")
                         ).scalar() in (None, "")


def test_commits_on_success_and_rolls_back_on_error(engine, conn):
    reg = new_registration(conn, customer_phone="+15551230001")
    claims = {"sub": "u", "role": "authenticated", "phone": "15551230001"}
    with as_caller(engine, claims) as c:
        c.execute(text("UPDATE registrations SET notification_pref = 'sms' WHERE id = :id"),
                  {"id": reg})
    with pytest.raises(RuntimeError), as_caller(engine, claims) as c:
        c.execute(text("UPDATE registrations SET notification_pref = 'none' WHERE id = :id"),
                  {"id": reg})
        raise RuntimeError("boom")
    assert conn.execute("SELECT notification_pref FROM registrations WHERE id = %s",
                        (reg,)).fetchone()["notification_pref"] == "sms"


@pytest.mark.parametrize("role", ["postgres", None, "authenticated; DROP TABLE x", "admin"])
def test_other_roles_are_refused(engine, role):
    with pytest.raises(CallerRoleRefused), as_caller(engine, {"role": role}):
        pass
