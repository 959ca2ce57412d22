"""The consent rule is one SQL function, and every path that decides asks it.

public.regnotify_skip_reason (migration 27) says why a delivery must not go
out. The queue run (claim_due), the single and the batch send claims, the
send's load (and so delivery_flow.skip_reason) and request_notification
must answer as it does on every combination of preference, contact,
opt-out, channel, fallback and burst; and the function itself must keep the
rule's order and its fallback rules (the pinned table below).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine

from db import deliveries
from db.connection import make_engine
from db.queries import query
from db.vocabulary import PREFERENCES
from tasks.sending.delivery_flow import skip_reason
from tests.pg import as_role, new_registration

PHONE, EMAIL = "+15552000001", "pat@example.com"


def rule(conn: psycopg.Connection, channel: str, pref: str, phone: str | None,
         email: str | None, fallback: bool = False, notify: bool = True,
         old: str | None = None, new: str | None = None) -> str | None:
    return conn.execute(
        "SELECT public.regnotify_skip_reason(%s, %s, %s, %s, %s, %s, %s, %s) AS r",
        (channel, pref, phone, email, fallback, notify, old, new)).fetchone()["r"]


# ── The rule itself ──────────────────────────────────────────────────────────

# (channel, pref, phone, email, phone opted out, fallback, notify, old, new) -> reason
PINNED: list[tuple[tuple[Any, ...], str | None]] = [
    (("sms", "both", PHONE, EMAIL, False, False, True, "a", "b"), None),
    (("sms", "email", PHONE, EMAIL, False, False, True, "a", "b"), "preference"),
    (("email", "sms", PHONE, EMAIL, False, False, True, "a", "b"), "preference"),
    (("email", "none", PHONE, EMAIL, False, False, True, "a", "b"), "preference"),
    # A fallback goes on any preference that chooses a channel, never on none.
    (("email", "sms", PHONE, EMAIL, False, True, True, None, None), None),
    (("sms", "email", PHONE, EMAIL, False, True, True, None, None), None),
    (("email", "none", PHONE, EMAIL, False, True, True, None, None), "preference"),
    # The order: preference, silenced, no_net_change, no_contact, opted_out.
    (("sms", "email", None, EMAIL, False, False, False, "a", "a"), "preference"),
    (("sms", "both", PHONE, EMAIL, True, False, False, "a", "a"), "silenced"),
    (("sms", "both", PHONE, EMAIL, True, False, True, "a", "a"), "no_net_change"),
    (("sms", "both", None, EMAIL, False, False, False, "a", "a"), "silenced"),
    (("sms", "both", None, EMAIL, False, False, True, None, "a"), "no_contact"),
    (("email", "both", PHONE, "", False, False, True, "a", "b"), "no_contact"),
    (("email", "both", PHONE, None, True, True, True, None, None), "no_contact"),
    (("sms", "both", PHONE, EMAIL, True, False, True, "a", "b"), "opted_out"),
    # An opted-out phone stops texts and every fallback, not a chosen e-mail.
    (("email", "both", PHONE, EMAIL, True, False, True, "a", "b"), None),
    (("email", "sms", PHONE, EMAIL, True, True, True, None, None), "opted_out"),
]


@pytest.mark.parametrize(("case", "reason"), PINNED)
def test_the_rule_decides_in_its_order(conn, case, reason):
    channel, pref, phone, email, opted_out, fallback, notify, old, new = case
    if opted_out:
        conn.execute("INSERT INTO sms_opt_outs (phone, opted_out, source) "
                     "VALUES (%s, true, 'test')", (phone,))
    assert rule(conn, channel, pref, phone, email, fallback, notify, old, new) == reason


def test_an_opt_in_again_is_no_opt_out(conn):
    conn.execute("INSERT INTO sms_opt_outs (phone, opted_out, source) "
                 "VALUES (%s, false, 'inbound:START')", (PHONE,))
    assert rule(conn, "sms", "both", PHONE, EMAIL) is None


# ── Every path agrees with it ────────────────────────────────────────────────

CONTACTS = list(itertools.product(PREFERENCES, (True, False), (True, False),
                                  ("none", "out", "in")))
BURSTS = list(itertools.product((True, False), ("manual", "same", "moved")))


@pytest.fixture()
def engine(clean_db: str) -> Iterator[Engine]:
    eng = make_engine(clean_db, pool_size=1)
    yield eng
    eng.dispose()


def _registrations(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """One registration per contact case and burst, each with one due queue row."""
    made = []
    for n, ((pref, has_phone, has_email, opt), (notify, stages)) in enumerate(
            itertools.product(CONTACTS, BURSTS)):
        phone = f"+1555300{n:04d}" if has_phone else None
        email = f"c{n}@example.com" if has_email else None
        if phone and opt != "none":
            conn.execute("INSERT INTO sms_opt_outs (phone, opted_out, source) "
                         "VALUES (%s, %s, 'test')", (phone, opt == "out"))
        reg = new_registration(conn, customer_phone=phone, customer_email=email,
                               notification_pref=pref)
        old, new = {"manual": (None, "sticker_ready"), "same": ("dmv_processing",) * 2,
                    "moved": ("dmv_processing", "sticker_ready")}[stages]
        conn.execute("DELETE FROM notification_queue WHERE registration_id = %s", (reg,))
        conn.execute("INSERT INTO notification_queue (registration_id, old_stage, new_stage, "
                     "notify_customer, send_after) VALUES (%s, %s, %s, %s, now())",
                     (reg, old, new, notify))
        made.append({"id": reg, "pref": pref, "phone": phone, "email": email,
                     "notify": notify, "old": old, "new": new})
    return made


def _contact(reg: dict[str, Any], channel: str) -> str | None:
    return reg["phone"] if channel == "sms" else reg["email"]


def _requeue(conn: psycopg.Connection, ids: list[int]) -> None:
    conn.execute("UPDATE registration_notifications SET status = 'queued', skip_reason = NULL, "
                 "lease_until = NULL WHERE id = ANY(%s)", (ids,))


def test_queue_run_claims_load_and_request_agree_with_the_rule(conn, clean_db, engine):
    regs = {r["id"]: r for r in _registrations(conn)}
    conn.execute(query("claim_due"), {"batch": 10_000})
    rows = conn.execute("SELECT id, registration_id::text AS reg, channel, skip_reason "
                        "FROM registration_notifications ORDER BY id").fetchall()
    assert len(rows) == 2 * len(regs)
    seen: set[str | None] = set()
    for row in rows:
        r = regs[row["reg"]]
        want = rule(conn, row["channel"], r["pref"], r["phone"], r["email"], False,
                    r["notify"], r["old"], r["new"])
        assert row["skip_reason"] == want, ("claim_due", r, row)
        seen.add(want)
    assert seen == {None, "preference", "silenced", "no_net_change", "no_contact", "opted_out"}

    # Every delivery a fallback or not (alternating), all queued again.
    by_reg: dict[str, dict[str, int]] = {}
    for row in rows:
        by_reg.setdefault(row["reg"], {})[row["channel"]] = row["id"]
    fallback: dict[int, bool] = {}
    for i, (_reg, ids) in enumerate(sorted(by_reg.items())):
        stands_in, instead_of = (("sms", "email") if i % 2 else ("email", "sms"))
        if i % 3:
            conn.execute("UPDATE registration_notifications SET fallback_for = %s "
                         "WHERE id = %s", (ids[instead_of], ids[stands_in]))
            fallback[ids[stands_in]] = True
    _requeue(conn, [row["id"] for row in rows])

    def want(row: dict[str, Any]) -> str | None:
        r = regs[row["reg"]]
        return rule(conn, row["channel"], r["pref"], r["phone"], r["email"],
                    fallback.get(row["id"], False))

    # The send's load, and the Python face of it.
    with engine.connect() as c:
        for d in deliveries.load_many(c, [row["id"] for row in rows]):
            row = next(x for x in rows if x["id"] == d.id)
            assert d.skip_reason == skip_reason(d) == want(row), ("load", regs[row["reg"]], d)

    # The single claim.
    for row in rows:
        r = regs[row["reg"]]
        got = conn.execute(query("claim_delivery"), {
            "id": row["id"], "lease_s": 30, "recipient": _contact(r, row["channel"]) or "x",
            "provider": "test", "body": "b", "subject": None, "template_used": "t",
            "language": "en"}).fetchone()
        assert got is not None
        assert got["skip_reason"] == want(row), ("claim_delivery", r, row)

    # The batch claim, one member at a time (a refused member stops the batch).
    emails = [row for row in rows if row["channel"] == "email"]
    _requeue(conn, [row["id"] for row in emails])
    for row in emails:
        r = regs[row["reg"]]
        got = conn.execute(query("claim_email_batch"), {
            "batch_id": f"b{row['id']}", "lease_s": 30, "provider": "test",
            "ids": [row["id"]], "recipients": [r["email"] or "x"], "bodies": ["b"],
            "subjects": ["s"], "templates": ["t"], "languages": ["en"]}).fetchone()
        assert got["skip_reason"] == want(row), ("claim_email_batch", r, row)

    # request_notification says beforehand what the queue claim will decide.
    for r in regs.values():
        if not (r["notify"] and r["old"] is None):
            continue  # one request per contact case
        reasons = {ch: rule(conn, ch, r["pref"], r["phone"], r["email"])
                   for ch in ("sms", "email")}
        with as_role(clean_db, "service_role", {"role": "service_role"}) as c:
            answer = c.execute("SELECT public.request_notification(%s) AS a",
                               (r["id"],)).fetchone()["a"]
        assert answer.get("channels", []) == [ch for ch, why in reasons.items() if why is None]
        skipped = [(s["channel"], s["reason"]) for s in answer["skipped"]]
        assert skipped == [(ch, why) for ch, why in reasons.items()
                           if why not in (None, "preference")], (r, answer)
        if not answer["queued"]:
            assert answer["reason"] == (skipped[0][1] if skipped else "preference"), answer


# ── Who may ask it ───────────────────────────────────────────────────────────


def test_execute_only_for_the_callers_of_request_notification(conn):
    fn = "public.regnotify_skip_reason(text,text,text,text,boolean,boolean,text,text)"
    got = {role for role in ("anon", "authenticated", "service_role", "public")
           if conn.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE') AS ok",
                           (role, fn)).fetchone()["ok"]}
    assert got == {"authenticated", "service_role"}
    row = conn.execute("SELECT p.prosecdef, p.proconfig FROM pg_proc p "
                       "WHERE p.oid = %s::regprocedure", (fn,)).fetchone()
    assert row["prosecdef"] is False  # the caller's RLS decides what it reads
    assert any(c.startswith("search_path=") for c in row["proconfig"])


def test_a_customer_learns_nothing_of_another_phones_opt_out(conn, clean_db):
    other = "+15552000999"
    conn.execute("INSERT INTO sms_opt_outs (phone, opted_out, source) VALUES (%s, true, 't')",
                 (other,))
    claims = {"sub": "u1", "role": "authenticated", "phone": PHONE.lstrip("+")}
    with as_role(clean_db, "authenticated", claims) as c:
        assert rule(c, "sms", "both", other, None) is None
    assert rule(conn, "sms", "both", other, None) == "opted_out"
