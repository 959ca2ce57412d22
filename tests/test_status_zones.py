"""`regnotify status` says the zone of every time it prints, and uses one zone for all of
them: the machine's. A held message's local opening keeps the customer's zone,
named beside it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.cli_runner import cli
from tests.flow import change_stage, make_due, run_tick
from tests.pg import new_registration
from tests.relay_helpers import new_delivery

pytestmark = pytest.mark.usefixtures("pipeline")

STAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?P<after>.{0,5})")


@pytest.fixture()
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_every_time_of_a_timeline_names_one_zone(conn, capsys, tokyo, twilio_wire,
                                                  resend_wire):
    reg = new_registration(conn, customer_phone="+15551230077", time_zone="America/Chicago",
                           customer_email="zoe@example.com")
    change_stage(conn, reg, "documents_collected")
    make_due(conn)
    run_tick()
    conn.execute("UPDATE registrations SET notification_pref = 'sms' WHERE id = %s", (reg,))
    new_delivery(conn, channel="sms", provider_message_id=None, status="queued",
                 registration_id=reg, new_stage="submitted_to_dmv", recipient="+15551230077",
                 hold_reason="quiet_hours", held_until="2030-01-02 14:00+00",
                 hold_zone="America/Chicago")
    code, out, err = cli(capsys, "status", reg)
    assert code == 0, err
    stamps = list(STAMP.finditer(out))
    assert len(stamps) >= 4, out  # created, the burst, its deliveries, the preference change
    for found in stamps:
        assert found.group("after").startswith(" JST"), (found.group(0), out)
    assert "until 08:00 America/Chicago" in out


def test_every_time_of_the_overview_names_its_zone(conn, capsys, tokyo):
    new_delivery(conn, channel="sms", provider_message_id="SMx", status="failed",
                 error_message="boom")
    code, out, err = cli(capsys, "status")
    assert code == 0, err
    stamps = list(STAMP.finditer(out))
    assert stamps, out
    assert all(s.group("after").startswith(" JST") for s in stamps), out
