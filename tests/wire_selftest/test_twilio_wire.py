"""The real ``twilio`` SDK against ``TwilioWire``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from tests.wire import (
    ACCEPTED,
    ACCEPTED_DROPPED,
    ACCEPTED_TIMEOUT,
    DROPPED,
    RATE_LIMITED,
    REJECTED,
    SERVER_ERROR,
    UNAUTHORIZED,
    TwilioWire,
)

TO = "+15551230001"
OTHER_TO = "+15551230002"
FROM = "+15005550006"
SERVICE = "MG" + "0" * 32


def sdk_client(wire: TwilioWire, token: str | None = None, timeout: float = 5) -> Client:
    """The documented way to point a stock Client at a wire."""
    client = Client(
        wire.account_sid,
        wire.auth_token if token is None else token,
        http_client=TwilioHttpClient(timeout=timeout),
    )
    client.edge = None
    client.region = None
    client.api.base_url = wire.url
    return client


def last_response_headers(client: Client) -> dict[str, str]:
    # TwilioRestException carries no headers; the SDK's own HTTP client keeps
    # the last response, which is where app code can find Retry-After.
    response = client.http_client._test_only_last_response  # type: ignore[attr-defined]
    assert response is not None
    return dict(response.headers)


def test_create_is_recorded_with_everything_a_test_asserts_on(twilio_wire: TwilioWire) -> None:
    client = sdk_client(twilio_wire)
    before = time.time()
    message = client.messages.create(
        to=TO, from_=FROM, body="Your plates are ready", status_callback="http://app/cb/1"
    )
    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert message.status == "queued"
    assert message.to == TO
    assert message.body == "Your plates are ready"
    assert message.num_segments == "1"

    [send] = twilio_wire.sends()
    assert (send.id, send.to, send.from_, send.body) == (
        message.sid,
        TO,
        FROM,
        "Your plates are ready",
    )
    assert send.status_callback == "http://app/cb/1"
    assert send.fault is None
    assert before <= send.received_at <= time.time()
    assert twilio_wire.accepted_count() == 1
    assert twilio_wire.accepted_count(TO) == 1
    assert twilio_wire.accepted_count(OTHER_TO) == 0
    assert [a.outcome for a in twilio_wire.attempts()] == [ACCEPTED]

    fetched = client.messages(message.sid).fetch()
    assert (fetched.sid, fetched.body, fetched.from_) == (message.sid, send.body, FROM)
    assert fetched.date_created is not None


def test_messaging_service_send_starts_accepted(twilio_client: Client, twilio_wire: TwilioWire):
    message = twilio_client.messages.create(to=TO, messaging_service_sid=SERVICE, body="hi")
    assert message.status == "accepted"
    assert message.messaging_service_sid == SERVICE
    [send] = twilio_wire.sends(TO)
    assert send.messaging_service_sid == SERVICE and send.from_ is None


@pytest.mark.parametrize(
    ("to", "code"),
    [
        ("+15005550001", 21211),
        ("+15005550002", 21612),
        ("+15005550003", 21408),
        ("+15005550004", 21610),
        ("+15005550009", 21614),
        ("not-a-number", 21211),
    ],
)
def test_magic_to_numbers_fail_with_their_code(
    twilio_client: Client, twilio_wire: TwilioWire, to: str, code: int
) -> None:
    with pytest.raises(TwilioRestException) as info:
        twilio_client.messages.create(to=to, from_=FROM, body="x")
    assert (info.value.code, info.value.status) == (code, 400)
    assert twilio_wire.accepted_count() == 0
    assert [a.outcome for a in twilio_wire.attempts()] == [REJECTED]


def test_magic_from_number_fails_with_21606(twilio_client: Client) -> None:
    with pytest.raises(TwilioRestException) as info:
        twilio_client.messages.create(to=TO, from_="+15005550007", body="x")
    assert (info.value.code, info.value.status) == (21606, 400)


def test_missing_body_is_21602(twilio_client: Client) -> None:
    with pytest.raises(TwilioRestException) as info:
        twilio_client.messages.create(to=TO, from_=FROM, body="")
    assert (info.value.code, info.value.status) == (21602, 400)


def test_wrong_credentials_get_401_20003(twilio_wire: TwilioWire) -> None:
    client = sdk_client(twilio_wire, token="not-the-token")
    with pytest.raises(TwilioRestException) as info:
        client.messages.create(to=TO, from_=FROM, body="x")
    assert (info.value.code, info.value.status) == (20003, 401)
    assert twilio_wire.accepted_count() == 0
    assert [a.outcome for a in twilio_wire.attempts()] == [UNAUTHORIZED]


def test_429_carries_retry_after(twilio_wire: TwilioWire) -> None:
    client = sdk_client(twilio_wire)
    twilio_wire.script(TO, ["429:7"])
    with pytest.raises(TwilioRestException) as info:
        client.messages.create(to=TO, from_=FROM, body="x")
    assert (info.value.code, info.value.status) == (20429, 429)
    assert last_response_headers(client)["Retry-After"] == "7"
    # The script is used up: the retry goes through.
    client.messages.create(to=TO, from_=FROM, body="x")
    assert [a.outcome for a in twilio_wire.attempts()] == [RATE_LIMITED, ACCEPTED]


def test_rate_limit_window_and_default_retry_after(twilio_wire: TwilioWire) -> None:
    client = sdk_client(twilio_wire)
    twilio_wire.configure(retry_after=3)
    twilio_wire.rate_limit(count=2)
    for _ in range(2):
        with pytest.raises(TwilioRestException) as info:
            client.messages.create(to=TO, from_=FROM, body="x")
        assert info.value.status == 429
        assert last_response_headers(client)["Retry-After"] == "3"
    client.messages.create(to=TO, from_=FROM, body="x")
    assert twilio_wire.accepted_count() == 1


def test_scripted_server_error_then_success(twilio_client: Client, twilio_wire: TwilioWire):
    twilio_wire.script(TO, ["500", "503:20500"])
    for status in (500, 503):
        with pytest.raises(TwilioRestException) as info:
            twilio_client.messages.create(to=TO, from_=FROM, body="x")
        assert (info.value.status, info.value.code) == (status, 20500)
    twilio_client.messages.create(to=TO, from_=FROM, body="x")
    # Scripts are per recipient: another number was never affected.
    twilio_client.messages.create(to=OTHER_TO, from_=FROM, body="x")
    outcomes = [a.outcome for a in twilio_wire.attempts()]
    assert outcomes == [SERVER_ERROR, SERVER_ERROR, ACCEPTED, ACCEPTED]


def test_scripted_permanent_code(twilio_client: Client, twilio_wire: TwilioWire) -> None:
    twilio_wire.script(TO, ["21610"])
    with pytest.raises(TwilioRestException) as info:
        twilio_client.messages.create(to=TO, from_=FROM, body="x")
    assert (info.value.status, info.value.code) == (400, 21610)


def test_timeout_after_accept_times_out_but_counts(twilio_wire: TwilioWire) -> None:
    client = sdk_client(twilio_wire, timeout=0.5)
    twilio_wire.script(TO, ["timeout_after_accept:3"])
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        client.messages.create(to=TO, from_=FROM, body="maybe sent")
    assert time.monotonic() - started < 2.5
    [send] = twilio_wire.sends(TO)
    assert send.fault == "timeout_after_accept" and send.body == "maybe sent"
    assert [a.outcome for a in twilio_wire.attempts()] == [ACCEPTED_TIMEOUT]
    # What a careful retry would do: look for the message before re-sending.
    found = client.messages.list(
        to=TO, from_=FROM, date_sent_after=datetime.now(UTC) - timedelta(minutes=1)
    )
    assert [m.sid for m in found] == [send.id]


def test_timeout_after_accept_knob(twilio_wire: TwilioWire) -> None:
    client = sdk_client(twilio_wire, timeout=0.3)
    twilio_wire.configure(timeout_after_accept=2.0)
    with pytest.raises(requests.exceptions.Timeout):
        client.messages.create(to=TO, from_=FROM, body="x")
    assert twilio_wire.accepted_count() == 1


def test_drop_is_not_sent_but_drop_after_accept_is(twilio_client: Client, twilio_wire: TwilioWire):
    twilio_wire.script(TO, ["drop", "drop_after_accept"])
    for _ in range(2):
        with pytest.raises(requests.exceptions.ConnectionError):
            twilio_client.messages.create(to=TO, from_=FROM, body="x")
    assert [a.outcome for a in twilio_wire.attempts()] == [DROPPED, ACCEPTED_DROPPED]
    [send] = twilio_wire.sends()
    assert send.fault == "drop_after_accept"


def test_list_filters_by_to_from_and_date_sent_after(
    twilio_client: Client, twilio_wire: TwilioWire
):
    old = twilio_client.messages.create(to=TO, from_=FROM, body="old news")
    # Back-date the first message: DateSent has one-second resolution, so
    # waiting would cost seconds per test.
    twilio_wire.get_send(old.sid).received_at -= 3600  # type: ignore[union-attr]
    new = twilio_client.messages.create(to=TO, from_=FROM, body="Stage: plates mailed")
    twilio_client.messages.create(to=TO, from_="+15005550010", body="other sender")
    twilio_client.messages.create(to=OTHER_TO, from_=FROM, body="other recipient")
    since = datetime.now(UTC) - timedelta(minutes=5)

    found = twilio_client.messages.list(to=TO, from_=FROM, date_sent_after=since)
    assert [(m.sid, m.body) for m in found] == [(new.sid, "Stage: plates mailed")]

    everything_to = twilio_client.messages.list(to=TO)
    assert [m.body for m in everything_to] == ["other sender", "Stage: plates mailed", "old news"]
    assert twilio_client.messages.list(to="+15559999999") == []


def test_a_message_held_in_the_queue_has_no_date_sent(
    twilio_client: Client, twilio_wire: TwilioWire
):
    twilio_wire.configure(carrier_queue_s=3600)
    held = twilio_client.messages.create(to=TO, from_=FROM, body="held")
    since = datetime.now(UTC) - timedelta(minutes=5)

    assert twilio_client.messages(held.sid).fetch().date_sent is None
    assert twilio_client.messages.list(to=TO, date_sent_after=since) == []
    [listed] = twilio_client.messages.list(to=TO)
    assert (listed.sid, listed.date_sent, listed.status) == (held.sid, None, "queued")

    twilio_wire.configure(carrier_queue_s=0)
    assert [m.sid for m in twilio_client.messages.list(to=TO, date_sent_after=since)] == [
        held.sid]


def test_list_pages_through_everything(twilio_client: Client) -> None:
    for i in range(7):
        twilio_client.messages.create(to=TO, from_=FROM, body=f"m{i}")
    bodies = [m.body for m in twilio_client.messages.list(to=TO, page_size=3)]
    assert bodies == [f"m{i}" for i in reversed(range(7))]
    assert len(twilio_client.messages.list(to=TO, limit=4)) == 4


def test_fetch_unknown_sid_is_404(twilio_client: Client) -> None:
    with pytest.raises(TwilioRestException) as info:
        twilio_client.messages("SM" + "f" * 32).fetch()
    assert (info.value.status, info.value.code) == (404, 20404)


def test_set_status_shows_in_fetch(twilio_client: Client, twilio_wire: TwilioWire) -> None:
    message = twilio_client.messages.create(to=TO, from_=FROM, body="x")
    twilio_wire.set_status(message.sid, "undelivered", 30003)
    fetched = twilio_client.messages(message.sid).fetch()
    assert (fetched.status, fetched.error_code) == ("undelivered", 30003)


def test_duplicates_groups_same_recipient_and_body(twilio_client: Client, twilio_wire: TwilioWire):
    for body in ("same", "same", "different"):
        twilio_client.messages.create(to=TO, from_=FROM, body=body)
    dupes = twilio_wire.duplicates()
    assert list(dupes) == [(TO, "same")]
    assert len(dupes[(TO, "same")]) == 2


@pytest.mark.parametrize(("body", "segments"), [
    ("a" * 306, "2"),
    ("a" * 152 + "€" + "a" * 152, "3"),   # the escape pair opens the second part
    ("ō" * 66 + "😀" + "ō" * 66, "3"),     # so does the surrogate pair
])
def test_num_segments_never_splits_a_pair(twilio_wire: TwilioWire, body: str,
                                          segments: str) -> None:
    message = sdk_client(twilio_wire).messages.create(to=TO, from_=FROM, body=body)
    assert message.num_segments == segments


def test_overlapping_attempts_counts_requests_for_one_number_in_flight_together(
        twilio_wire: TwilioWire) -> None:
    import threading

    twilio_wire.configure(latency=0.3)
    client = sdk_client(twilio_wire)
    client.messages.create(to=TO, from_=FROM, body="one")
    client.messages.create(to=TO, from_=FROM, body="two")
    assert twilio_wire.overlapping_attempts() == []  # one after the other

    threads = [threading.Thread(target=client.messages.create,
                                kwargs={"to": number, "from_": FROM, "body": "together"})
               for number in (OTHER_TO, OTHER_TO, TO.replace("0001", "0003"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (pair,) = twilio_wire.overlapping_attempts()
    assert {a.recipient for a in pair} == {OTHER_TO}
