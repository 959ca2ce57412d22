"""What the search box reads a query as, whatever way a person types it (property tests),
and keyset paging that neither skips nor repeats a message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from db.queries import query
from tasks.staff.data import parse_search
from tests import staff_helpers
from tests.pg import as_role, connect, new_registration

_DIGITS = st.text(alphabet="0123456789", min_size=10, max_size=10).filter(
    lambda d: d[0] not in "01" and d[3] not in "01")
_FORMATS = [
    "({a}) {b}-{c}", "{a}-{b}-{c}", "{a}.{b}.{c}", "{a} {b} {c}", "{a}{b}{c}",
    "+1 {a} {b} {c}", "1-{a}-{b}-{c}", "+1 ({a}) {b}-{c}", "+1{a}{b}{c}",
]


@given(_DIGITS, st.sampled_from(_FORMATS))
def test_any_usual_us_phone_format_is_one_e164_number(digits, fmt):
    typed = fmt.format(a=digits[:3], b=digits[3:6], c=digits[6:])
    assert parse_search(typed).phone == "+1" + digits


@given(st.from_regex(r"[a-z]{1,10}\.[a-z]{1,8}@[a-z]{2,10}\.(com|org|net)", fullmatch=True))
def test_an_address_is_an_email_search_in_lower_case(address):
    found = parse_search(address.upper())
    assert found.email == address and not (found.phone or found.vin or found.name)


@given(st.lists(st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]),
                        max_size=20), max_size=6).map(" ".join))
def test_whatever_is_typed_gives_one_kind_or_nothing(typed):
    found = parse_search(typed)
    kinds = [k for k in (found.phone, found.email, found.vin, found.name) if k]
    assert len(kinds) <= 1
    if found.name:
        # Words quoted for to_tsquery: no operator of the typist's survives unquoted.
        for part in found.name.split(" & "):
            assert part.startswith("'") and part.endswith("':*")


def test_names_and_vins():
    assert parse_search("Ana lo").name == "'ana':* & 'lo':*"
    assert parse_search("o'brien").name == "'o''brien':*"
    assert parse_search("1hgcm826").vin == "1HGCM826"
    assert parse_search("   ").any is False


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=40))
def test_keyset_pages_cover_every_message_once_newest_first(database_url, offsets):
    # Many messages share a created_at: the id breaks the tie, so no page repeats or
    # skips one at a page boundary.
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with connect(database_url) as conn:
        conn.execute("TRUNCATE registrations CASCADE")
        conn.execute("TRUNCATE staff_members")
        conn.execute("INSERT INTO staff_members (email, name) VALUES ('p@x.example', 'P')")
        reg = new_registration(conn)
        for minutes in offsets:
            conn.execute("INSERT INTO registration_notifications (registration_id, channel, "
                         "status, created_at) VALUES (%s, 'sms', 'sent', %s)",
                         (reg, base + timedelta(minutes=minutes)))
        expected = [r["id"] for r in conn.execute(
            "SELECT id FROM registration_notifications ORDER BY created_at DESC, id DESC")]
    seen: list[int] = []
    before = None
    with as_role(database_url, "authenticated", staff_helpers.staff_claims("p@x.example")) as c:
        while True:
            rows = c.execute(query("staff_messages"), {
                "status": None, "channel": None, "since": None, "until": None,
                "before_at": before[0] if before else None,
                "before_id": before[1] if before else None, "limit": 7}).fetchall()
            if not rows:
                break
            seen += [r["id"] for r in rows]
            before = (rows[-1]["created_at"], rows[-1]["id"])
    with connect(database_url) as conn:
        conn.execute("TRUNCATE registrations, staff_members CASCADE")
    assert seen == expected
