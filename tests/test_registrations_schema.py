"""Constraints on registrations: bad input is refused with an error that names the problem."""

from __future__ import annotations

import psycopg
import pytest

from tests.pg import new_registration


@pytest.mark.parametrize("pref", ["sms", "email", "both", "none"])
def test_preference_accepts_the_four_channels(conn, pref):
    reg = new_registration(conn, notification_pref=pref)
    got = conn.execute("SELECT notification_pref FROM registrations WHERE id = %s",
                       (reg,)).fetchone()
    assert got["notification_pref"] == pref


def test_preference_defaults_to_both(conn):
    reg = new_registration(conn)
    got = conn.execute("SELECT notification_pref FROM registrations WHERE id = %s",
                       (reg,)).fetchone()
    assert got["notification_pref"] == "both"


def test_preference_check_refuses_other_values(conn):
    with pytest.raises(psycopg.errors.CheckViolation, match="notification_pref"):
        new_registration(conn, notification_pref="pigeon")


@pytest.mark.parametrize("phone", ["5551234567", "+0123456789", "+1 555 123 4567",
                                   "+1555123456789012", "+1-555-123-4567", ""])
def test_malformed_phone_is_refused(conn, phone):
    with pytest.raises(psycopg.errors.CheckViolation, match="customer_phone_e164"):
        new_registration(conn, customer_phone=phone)


@pytest.mark.parametrize("email", ["dana", "dana@", "@example.com", "dana@example",
                                   "da na@example.com"])
def test_malformed_email_is_refused(conn, email):
    with pytest.raises(psycopg.errors.CheckViolation, match="customer_email_shape"):
        new_registration(conn, customer_email=email)


def test_missing_contacts_are_allowed(conn):
    new_registration(conn, customer_phone=None, customer_email=None)


def test_unknown_stage_is_refused_and_names_the_stage(conn):
    reg = new_registration(conn)
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as info:
        conn.execute("UPDATE registrations SET current_stage = 'teleported' WHERE id = %s",
                     (reg,))
    assert "teleported" in str(info.value.diag.message_detail)
    # Nothing was queued for the refused change.
    n = conn.execute("SELECT count(*) AS n FROM notification_queue").fetchone()["n"]
    assert n == 0


def test_stages_are_data(conn):
    stages = [r["stage"] for r in conn.execute(
        "SELECT stage FROM registration_stages ORDER BY position")]
    assert stages == ["sale_complete", "documents_collected", "submitted_to_dmv",
                      "dmv_processing", "sticker_ready", "sticker_delivered", "needs_attention"]
