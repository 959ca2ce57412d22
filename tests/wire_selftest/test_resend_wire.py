"""The real ``resend`` SDK against ``ResendWire``.

The ``resend_wire`` fixture points the SDK's module globals at the wire and
restores them afterwards.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import resend
from resend.exceptions import (
    ApplicationError,
    InvalidApiKeyError,
    MissingApiKeyError,
    MissingRequiredFieldsError,
    RateLimitError,
    ResendError,
    ValidationError,
)
from resend.http_client_requests import RequestsClient

from tests.wire import (
    ACCEPTED,
    ACCEPTED_TIMEOUT,
    IDEMPOTENCY_CONFLICT,
    RATE_LIMITED,
    REJECTED,
    REPLAYED,
    SERVER_ERROR,
    ResendWire,
)

TO = "ann@example.com"


def email(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "from": "Registrations <registrations@dealer.example>",
        "to": TO,
        "subject": "Your registration: plates mailed",
        "html": "<p>Plates mailed</p>",
        "text": "Plates mailed",
        "reply_to": "help@dealer.example",
        "tags": [{"name": "stage", "value": "plates_mailed"}],
        "headers": {"X-Entity-Ref-ID": "reg-42"},
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def headers_ci(error: ResendError) -> dict[str, str]:
    # ResendError.headers is a plain dict copied from the response, so its
    # keys are case-sensitive; compare case-insensitively like HTTP does.
    return {k.lower(): v for k, v in error.headers.items()}


def test_send_is_recorded_with_everything_a_test_asserts_on(resend_wire: ResendWire) -> None:
    before = time.time()
    response = resend.Emails.send(email(), {"idempotency_key": "delivery-1"})
    uuid.UUID(response["id"])

    [send] = resend_wire.sends()
    assert send.id == response["id"]
    assert (send.to, send.recipients) == (TO, [TO])
    assert send.subject == "Your registration: plates mailed"
    assert (send.text, send.html, send.body) == (
        "Plates mailed",
        "<p>Plates mailed</p>",
        "Plates mailed",
    )
    assert send.idempotency_key == "delivery-1"
    assert send.payload["reply_to"] == "help@dealer.example"
    assert send.payload["tags"] == [{"name": "stage", "value": "plates_mailed"}]
    assert send.payload["headers"] == {"X-Entity-Ref-ID": "reg-42"}
    assert before <= send.received_at <= send.accepted_at <= time.time()
    assert [a.outcome for a in resend_wire.attempts()] == [ACCEPTED]

    got = resend.Emails.get(response["id"])
    assert got["id"] == response["id"]
    assert got["to"] == [TO]
    assert got["subject"] == send.subject
    assert got["last_event"] == "sent"


def test_recipient_lists_display_names_and_case(resend_wire: ResendWire) -> None:
    resend.Emails.send(email(to=["Ann <Ann@Example.com>", "bob@example.com"]))
    [send] = resend_wire.sends()
    assert send.recipients == ["Ann@Example.com", "bob@example.com"]
    assert resend_wire.accepted_count("ann@example.com") == 1
    assert resend_wire.accepted_count("BOB@example.com") == 1


def test_html_only_email_uses_html_as_body(resend_wire: ResendWire) -> None:
    resend.Emails.send(email(text=None))
    [send] = resend_wire.sends()
    assert send.text is None and send.body == "<p>Plates mailed</p>"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"from": None}, "from"),
        ({"to": None}, "to"),
        ({"to": []}, "to"),
        ({"subject": None}, "subject"),
        ({"to": "no-at-sign"}, "to"),
        ({"to": "someone@invalid.test"}, "to"),
        ({"to": ["ok@example.com", "x@mail.invalid.test"]}, "to"),
        ({"from": "nobody"}, "from"),
        ({"tags": [{"name": "has space", "value": "x"}]}, "tags"),
    ],
)
def test_validation_errors_are_422(
    resend_wire: ResendWire, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        resend.Emails.send(email(**overrides))
    assert (info.value.code, info.value.error_type) == (422, "validation_error")
    assert f"`{field}`" in info.value.message or field == "tags"
    assert resend_wire.accepted_count() == 0
    assert [a.outcome for a in resend_wire.attempts()] == [REJECTED]


def test_missing_field_name_can_mimic_resend(resend_wire: ResendWire) -> None:
    resend_wire.missing_field_name = "missing_required_field"
    with pytest.raises(MissingRequiredFieldsError) as info:
        resend.Emails.send(email(subject=None))
    assert (info.value.code, info.value.error_type) == (422, "missing_required_field")


def test_wrong_key_is_403_and_missing_key_is_401(resend_wire: ResendWire) -> None:
    resend.api_key = "re_wrong"
    with pytest.raises(InvalidApiKeyError) as wrong:
        resend.Emails.send(email())
    assert (wrong.value.code, wrong.value.error_type) == (403, "invalid_api_key")
    resend.api_key = None
    with pytest.raises(MissingApiKeyError) as missing:
        resend.Emails.send(email())
    assert (missing.value.code, missing.value.error_type) == (401, "missing_api_key")
    assert resend_wire.accepted_count() == 0


def test_429_carries_retry_after(resend_wire: ResendWire) -> None:
    resend_wire.script(TO, ["429:4"])
    with pytest.raises(RateLimitError) as info:
        resend.Emails.send(email())
    assert (info.value.code, info.value.error_type) == (429, "rate_limit_exceeded")
    headers = headers_ci(info.value)
    assert headers["retry-after"] == "4"
    assert headers["ratelimit-remaining"] == "0"
    resend.Emails.send(email())
    assert [a.outcome for a in resend_wire.attempts()] == [RATE_LIMITED, ACCEPTED]


def test_500_is_application_error(resend_wire: ResendWire) -> None:
    resend_wire.script(TO, ["500"])
    with pytest.raises(ApplicationError) as info:
        resend.Emails.send(email())
    assert (info.value.code, info.value.error_type) == (500, "application_error")
    assert [a.outcome for a in resend_wire.attempts()] == [SERVER_ERROR]


def test_idempotent_replay_returns_the_same_id_and_sends_once(resend_wire: ResendWire) -> None:
    first = resend.Emails.send(email(), {"idempotency_key": "reg-42/stage-3"})
    # Same payload with its keys in another order is still the same payload.
    reordered = dict(reversed(list(email().items())))
    again = resend.Emails.send(reordered, {"idempotency_key": "reg-42/stage-3"})
    assert again["id"] == first["id"]
    assert resend_wire.accepted_count() == 1
    assert [a.outcome for a in resend_wire.attempts()] == [ACCEPTED, REPLAYED]
    assert resend_wire.stats()["outcomes"][REPLAYED] == 1


def test_same_key_other_payload_is_409_invalid_idempotent_request(resend_wire: ResendWire):
    resend.Emails.send(email(), {"idempotency_key": "k"})
    with pytest.raises(ResendError) as info:
        resend.Emails.send(email(subject="Something else"), {"idempotency_key": "k"})
    assert (info.value.code, info.value.error_type) == (409, "invalid_idempotent_request")
    assert resend_wire.accepted_count() == 1


def test_same_key_while_first_in_flight_is_409_concurrent(resend_wire: ResendWire) -> None:
    # Only the first request is slow, so the second one answers at once.
    resend_wire.script(TO, ["latency:0.8"])
    results: dict[str, Any] = {}

    def first() -> None:
        results["first"] = resend.Emails.send(email(), {"idempotency_key": "k"})

    thread = threading.Thread(target=first)
    thread.start()
    try:
        deadline = time.monotonic() + 2
        while resend_wire.stats()["in_flight"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(ResendError) as info:
            resend.Emails.send(email(), {"idempotency_key": "k"})
        assert (info.value.code, info.value.error_type) == (409, "concurrent_idempotent_requests")
    finally:
        thread.join()
    assert resend_wire.accepted_count() == 1
    assert resend_wire.sends()[0].id == results["first"]["id"]
    outcomes = sorted(a.outcome for a in resend_wire.attempts())
    assert outcomes == sorted([ACCEPTED, IDEMPOTENCY_CONFLICT])


def test_failed_first_attempt_does_not_keep_the_key(resend_wire: ResendWire) -> None:
    resend_wire.script(TO, ["503"])
    with pytest.raises(ResendError):
        resend.Emails.send(email(), {"idempotency_key": "k"})
    sent = resend.Emails.send(email(), {"idempotency_key": "k"})
    assert [s.id for s in resend_wire.sends()] == [sent["id"]]


def test_timeout_after_accept_times_out_but_counts_and_retry_replays(
    resend_wire: ResendWire,
) -> None:
    resend.default_http_client = RequestsClient(timeout=0.5)  # type: ignore[arg-type]
    resend_wire.script(TO, ["timeout_after_accept:3"])
    started = time.monotonic()
    with pytest.raises(ResendError) as info:
        resend.Emails.send(email(), {"idempotency_key": "k"})
    assert time.monotonic() - started < 2.5
    # The SDK reports a client-side timeout as code 500 with this type.
    assert info.value.error_type == "HttpClientError"
    assert "timed out" in info.value.message.lower()
    [send] = resend_wire.sends()
    assert send.fault == "timeout_after_accept"

    retried = resend.Emails.send(email(), {"idempotency_key": "k"})
    assert retried["id"] == send.id
    assert resend_wire.accepted_count() == 1
    assert [a.outcome for a in resend_wire.attempts()] == [ACCEPTED_TIMEOUT, REPLAYED]


def test_idempotency_keys_expire_after_ttl(resend_wire: ResendWire) -> None:
    resend_wire.configure(idempotency_ttl=0.2)
    first = resend.Emails.send(email(), {"idempotency_key": "k"})
    time.sleep(0.3)
    second = resend.Emails.send(email(), {"idempotency_key": "k"})
    assert first["id"] != second["id"]
    assert resend_wire.accepted_count() == 2


def test_too_long_idempotency_key_is_400(resend_wire: ResendWire) -> None:
    with pytest.raises(ResendError) as info:
        resend.Emails.send(email(), {"idempotency_key": "k" * 257})
    assert (info.value.code, info.value.error_type) == (400, "invalid_idempotency_key")


def test_get_unknown_email_is_404(resend_wire: ResendWire) -> None:
    with pytest.raises(ResendError) as info:
        resend.Emails.get(str(uuid.uuid4()))
    assert (info.value.code, info.value.error_type) == (404, "not_found")


def test_resend_test_addresses_are_accepted_with_their_last_event(resend_wire: ResendWire):
    sent = resend.Emails.send(email(to="bounced@resend.dev"))
    assert resend.Emails.get(sent["id"])["last_event"] == "bounced"
    resend_wire.set_status(sent["id"], "delivered")
    assert resend.Emails.get(sent["id"])["last_event"] == "delivered"


def test_list_is_newest_first(resend_wire: ResendWire) -> None:
    ids = [resend.Emails.send(email(subject=f"s{i}"))["id"] for i in range(3)]
    listed = resend.Emails.list({"limit": 2})
    assert [e["id"] for e in listed["data"]] == [ids[2], ids[1]]
    assert listed["has_more"] is True
