"""`regnotify demo` against the test database, eager tasks and the wire-level providers."""

from __future__ import annotations

import pytest

from tests.pg import connect

pytestmark = pytest.mark.usefixtures("pipeline")


def test_demo_shows_sends_merges_and_skips(clean_db, twilio_wire, resend_wire, capsys):
    from tasks.cli.main import main

    with connect(clean_db) as conn:
        conn.execute("UPDATE notification_config SET debounce_window = interval '7 minutes'")
    assert main(["demo", "--window", "1", "--timeout", "30"]) == 0
    out = capsys.readouterr().out
    assert "messages sent" in out and "skipped: silenced" in out
    assert "skipped: no_net_change" in out and "skipped: preference" in out
    assert "skipped: no_contact" in out
    # Piped (captured): the summary's title stands on a line of its own, after
    # a blank one, not on the live table's bottom border; no table wraps at 80.
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == "summary")
    assert lines[at - 1].strip() == "", lines[at - 2: at + 1]
    assert max(len(line) for line in lines) > 80

    # Ana's three changes became one text and one e-mail naming the last stage.
    [ana_sms] = twilio_wire.sends("+15550100001")
    assert "DMV is processing" in ana_sms.body
    assert resend_wire.accepted_count("ana@example.com") == 1
    # Ben silenced, Cleo e-mail only, Dev none, Eve no phone.
    assert twilio_wire.accepted_count() == 1
    assert resend_wire.accepted_count() == 2  # Ana and Eve
    with connect(clean_db) as conn:
        merged = conn.execute(
            "SELECT q.change_count FROM notification_queue q JOIN registrations r "
            "ON r.id = q.registration_id WHERE r.customer_name LIKE 'Ana Burst%'").fetchone()
        window = conn.execute("SELECT debounce_window::text AS w FROM notification_config"
                              ).fetchone()
    assert merged["change_count"] == 3
    assert window["w"] == "00:07:00"  # the demo put the window back


def test_demo_rejects_a_silly_window(capsys):
    from tasks.cli.main import main

    assert main(["demo", "--window", "0"]) == 2
    assert "--window" in capsys.readouterr().err


def test_demo_names_a_registration_to_follow_on_the_customer_page(monkeypatch):
    from tasks.cli import demo
    from tasks.settings import get_settings

    monkeypatch.setenv("PORTAL_URL", "http://127.0.0.1:8000/portal")
    get_settings.cache_clear()
    try:
        hint = demo._portal_hint(demo._customers("t")[0])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert "http://127.0.0.1:8000/portal" in hint and "+15550100001" in hint
    assert "sign-in code for +*******0001" in hint
