"""Quiet hours in SQL: the release-time arithmetic across real DST nights, and zone validation."""

from __future__ import annotations

from datetime import UTC, datetime, time

import psycopg
import pytest

from tests.pg import new_registration


def _release(conn, at: str, zone: str, start: str = "21:00", end: str = "08:00"):
    return conn.execute(
        "SELECT quiet_hours_release_at(%s::timestamptz, %s, %s::time, %s::time) AS r",
        (at, zone, start, end)).fetchone()["r"]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "expected", "hours_held"),
    [
        # Spring forward (2026-03-08 02:00 CST -> 03:00 CDT): 22:00 CST to 08:00 CDT is 9 h.
        ("2026-03-08 04:00Z", "2026-03-08 13:00", 9),
        # Just after midnight, before the jump: still 08:00 CDT.
        ("2026-03-08 07:30Z", "2026-03-08 13:00", 5.5),
        # Fall back (2026-11-01 02:00 CDT -> 01:00 CST): 22:00 CDT to 08:00 CST is 11 h.
        ("2026-11-01 03:00Z", "2026-11-01 14:00", 11),
        # 01:30 happens twice that night; either way the window opens at 08:00 CST.
        ("2026-11-01 06:30Z", "2026-11-01 14:00", 7.5),
        ("2026-11-01 07:30Z", "2026-11-01 14:00", 6.5),
        # An ordinary night: 10 h.
        ("2026-06-10 03:00Z", "2026-06-10 13:00", 10),
    ],
)
def test_the_window_opens_at_0800_local_across_dst_nights(conn, at, expected, hours_held):
    release = _release(conn, at, "America/Chicago")
    assert release == _utc(expected)
    assert (release - datetime.fromisoformat(at.replace("Z", "+00:00"))).total_seconds() \
        == hours_held * 3600


@pytest.mark.parametrize(
    "at",
    ["2026-03-08 02:59:59Z",  # 20:59:59 CST: not yet quiet
     "2026-03-08 13:00Z",     # 08:00 CDT: open again
     "2026-06-10 19:00Z"],    # 14:00 CDT
)
def test_outside_the_window_nothing_is_held(conn, at):
    assert _release(conn, at, "America/Chicago") is None


def test_the_window_starts_at_its_start_time_exactly(conn):
    # 21:00:00 CDT is inside; the next opening is the following 08:00.
    assert _release(conn, "2026-06-10 02:00:00Z", "America/Chicago") == _utc("2026-06-10 13:00")


def test_european_dst_night_and_a_same_day_window(conn):
    # London springs forward 2026-03-29 01:00 GMT -> 02:00 BST.
    assert _release(conn, "2026-03-28 23:00Z", "Europe/London") == _utc("2026-03-29 07:00")
    # A same-day window (13:00-14:00) holds only inside it.
    assert _release(conn, "2026-06-10 18:30Z", "America/Chicago", "13:00", "14:00") \
        == _utc("2026-06-10 19:00")
    assert _release(conn, "2026-06-10 19:30Z", "America/Chicago", "13:00", "14:00") is None


def test_equal_start_and_end_means_no_quiet_hours(conn):
    assert _release(conn, "2026-06-10 04:00Z", "America/Chicago", "08:00", "08:00") is None


def test_the_same_night_in_zones_on_each_side_of_the_dealership(conn):
    at = "2026-06-10 03:30Z"  # 23:30 New York, 22:30 Chicago, 20:30 Los Angeles
    assert _release(conn, at, "America/New_York") == _utc("2026-06-10 12:00")
    assert _release(conn, at, "America/Chicago") == _utc("2026-06-10 13:00")
    assert _release(conn, at, "America/Los_Angeles") is None


def test_db_helper_matches(conn, clean_db):
    from sqlalchemy import create_engine

    from db.connection import sqlalchemy_url
    from db.holds import release_at

    engine = create_engine(sqlalchemy_url(clean_db))
    try:
        with engine.connect() as c:
            got = release_at(c, _utc("2026-03-08 04:00"), "America/Chicago",
                             time(21), time(8))
    finally:
        engine.dispose()
    assert got == _utc("2026-03-08 13:00")


# ── Validation ───────────────────────────────────────────────────────────────


@pytest.mark.parametrize("bad", ["America/Chicgo", "CST", "+05", "Mars/Olympus_Mons", ""])
def test_a_bad_registration_zone_is_refused_with_a_readable_error(conn, bad):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        new_registration(conn, time_zone=bad)
    message = str(caught.value)
    assert "registrations.time_zone" in message and repr(bad) in message.replace('"', "'")
    assert "America/Chicago" in (caught.value.diag.message_hint or "")


def test_a_bad_zone_on_update_and_in_the_config_is_refused(conn):
    reg = new_registration(conn, time_zone="America/Denver")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"registrations\.time_zone"):
        conn.execute("UPDATE registrations SET time_zone = 'Europe/Londn' WHERE id = %s", (reg,))
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match=r"notification_config\.default_time_zone: 'Central' is not"):
        conn.execute("UPDATE notification_config SET default_time_zone = 'Central'")
    conn.execute("UPDATE registrations SET time_zone = NULL WHERE id = %s", (reg,))
    conn.execute("UPDATE notification_config SET default_time_zone = 'UTC'")


def test_quiet_channels_are_sms_or_email(conn):
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE notification_config SET quiet_hours_channels = '{sms,fax}'")


def test_defaults(conn):
    row = conn.execute(
        "SELECT column_name, column_default FROM information_schema.columns "
        "WHERE table_name = 'notification_config' AND column_name IN "
        "('quiet_hours_start', 'quiet_hours_end', 'quiet_hours_channels', "
        " 'default_time_zone', 'fallback_enabled')").fetchall()
    defaults = {r["column_name"]: r["column_default"] for r in row}
    assert "21:00" in defaults["quiet_hours_start"] and "08:00" in defaults["quiet_hours_end"]
    assert "{sms}" in defaults["quiet_hours_channels"]
    assert "America/Chicago" in defaults["default_time_zone"]
    assert defaults["fallback_enabled"] == "true"
