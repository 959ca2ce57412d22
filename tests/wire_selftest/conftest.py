"""Fixtures: one wire per provider per module, wiped before every test.

Starting a wire per test would cost a shutdown poll (~0.1 s) each time;
``reset(config=True)`` gives every test the same clean slate for free.

``twilio_wire``/``resend_wire`` deliberately shadow the fixtures of the same
names in ``tests/conftest.py``: these need no database or Redis, and the
Resend one also points the SDK globals at the wire for the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.wire import ResendWire, TwilioWire

if TYPE_CHECKING:
    from twilio.rest import Client


@pytest.fixture(scope="module")
def _twilio_server() -> Iterator[TwilioWire]:
    with TwilioWire(seed=1234) as wire:
        yield wire


@pytest.fixture(scope="module")
def _resend_server() -> Iterator[ResendWire]:
    with ResendWire(seed=1234) as wire:
        yield wire


@pytest.fixture()
def twilio_wire(_twilio_server: TwilioWire) -> TwilioWire:
    """A running Twilio wire with an empty ledger and default knobs."""
    _twilio_server.reset(config=True)
    return _twilio_server


@pytest.fixture()
def resend_wire(_resend_server: ResendWire) -> Iterator[ResendWire]:
    """A running Resend wire with an empty ledger and default knobs; the
    ``resend`` SDK globals point at it for the test and are put back after,
    because they are process-wide."""
    _resend_server.reset(config=True)
    _resend_server.missing_field_name = ResendWire.missing_field_name
    saved = _resend_server.configure_sdk(timeout=5)
    try:
        yield _resend_server
    finally:
        saved.restore()


@pytest.fixture()
def twilio_client(twilio_wire: TwilioWire) -> Client:
    """A real ``twilio.rest.Client`` pointed at the wire (5 s timeout)."""
    return twilio_wire.client(timeout=5)
