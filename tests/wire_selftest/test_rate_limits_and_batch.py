"""The wires enforce per-second limits like the providers, and Resend's batch endpoint."""

from __future__ import annotations

import time
from typing import Any

import pytest
import resend
from resend.exceptions import RateLimitError, ResendError
from resend.http_client_requests import RequestsClient
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tests.wire import ACCEPTED_TIMEOUT, REPLAYED, ResendWire, TwilioWire

FROM_SMS = "+15005550006"


def mail(to: str, subject: str = "Plates mailed") -> dict[str, Any]:
    return {"from": "Registrations <registrations@dealer.example>", "to": to,
            "subject": subject, "text": subject}


def test_resend_limit_is_per_second_not_a_double_burst(resend_wire: ResendWire) -> None:
    resend_wire.configure(max_rps=2)
    statuses = []
    for i in range(3):
        try:
            resend.Emails.send(mail(f"a{i}@example.com"))  # type: ignore[arg-type]
            statuses.append(200)
        except RateLimitError as exc:
            statuses.append(429)
            headers = {k.lower(): v for k, v in exc.headers.items()}
            assert headers["ratelimit-limit"] == "2"
            assert headers["ratelimit-remaining"] == "0"
            assert int(headers["retry-after"]) >= 1
            assert headers["ratelimit-reset"] == headers["retry-after"]
    assert statuses == [200, 200, 429]
    # A second later the window has room again, and only for two.
    time.sleep(1.05)
    resend.Emails.send(mail("b1@example.com"))  # type: ignore[arg-type]
    resend.Emails.send(mail("b2@example.com"))  # type: ignore[arg-type]
    with pytest.raises(RateLimitError):
        resend.Emails.send(mail("b3@example.com"))  # type: ignore[arg-type]
    assert resend_wire.max_in_any_second() == 3
    assert resend_wire.accepted_count() == 4


def test_twilio_limit_answers_20429_with_retry_after(twilio_wire: TwilioWire,
                                                     twilio_client: Client) -> None:
    twilio_wire.configure(max_rps=2)
    twilio_client.messages.create(to="+15551230001", from_=FROM_SMS, body="1")
    twilio_client.messages.create(to="+15551230002", from_=FROM_SMS, body="2")
    with pytest.raises(TwilioRestException) as caught:
        twilio_client.messages.create(to="+15551230003", from_=FROM_SMS, body="3")
    assert caught.value.status == 429 and caught.value.code == 20429
    assert twilio_wire.accepted_count() == 2


def test_batch_sends_each_email_and_answers_ids_in_order(resend_wire: ResendWire) -> None:
    answer = resend.Batch.send([mail("x@example.com"), mail("y@example.com")])  # type: ignore[list-item]
    ids = [item["id"] for item in answer["data"]]
    assert [resend_wire.get_send(i).to for i in ids] == ["x@example.com", "y@example.com"]  # type: ignore[union-attr]
    assert "errors" not in answer


def test_batch_strict_refuses_all_permissive_refuses_only_the_bad_one(
    resend_wire: ResendWire,
) -> None:
    batch = [mail("ok1@example.com"), mail("bad@invalid.test"), mail("ok2@example.com")]
    with pytest.raises(ResendError) as caught:
        resend.Batch.send(batch)  # type: ignore[arg-type]
    assert int(caught.value.code) == 422 and "emails[1]" in caught.value.message
    assert resend_wire.accepted_count() == 0

    answer = resend.Batch.send(batch, {"batch_validation": "permissive"})  # type: ignore[arg-type]
    assert len(answer["data"]) == 2
    (error,) = answer["errors"]
    assert error["index"] == 1 and "invalid.test" in error["message"]
    assert [s.to for s in resend_wire.sends()] == ["ok1@example.com", "ok2@example.com"]


def test_batch_idempotency_replays_and_409s_on_another_payload(resend_wire: ResendWire) -> None:
    batch = [mail("p@example.com"), mail("q@example.com")]
    options: Any = {"idempotency_key": "batch-1", "batch_validation": "permissive"}
    first = resend.Batch.send(batch, options)  # type: ignore[arg-type]
    again = resend.Batch.send(batch, options)  # type: ignore[arg-type]
    assert first["data"] == again["data"]
    assert resend_wire.accepted_count() == 2
    assert resend_wire.stats()["outcomes"].get(REPLAYED) == 1
    with pytest.raises(ResendError) as caught:
        resend.Batch.send([mail("p@example.com")], options)  # type: ignore[arg-type]
    assert int(caught.value.code) == 409
    assert caught.value.error_type == "invalid_idempotent_request"
    assert resend_wire.accepted_count() == 2


def test_batch_lost_answer_then_retry_sends_nothing_twice(resend_wire: ResendWire) -> None:
    resend_wire.configure(timeout_after_accept=1.0)
    batch = [mail("r@example.com"), mail("s@example.com")]
    options: Any = {"idempotency_key": "batch-2", "batch_validation": "permissive"}
    saved = resend.default_http_client
    resend.default_http_client = RequestsClient(timeout=0.3)  # type: ignore[arg-type]
    try:
        with pytest.raises(ResendError):
            resend.Batch.send(batch, options)  # type: ignore[arg-type]
    finally:
        resend.default_http_client = saved
    resend_wire.configure(timeout_after_accept=0.0)
    time.sleep(0.8)
    answer = resend.Batch.send(batch, options)  # type: ignore[arg-type]
    assert len(answer["data"]) == 2
    assert resend_wire.accepted_count() == 2
    assert resend_wire.stats()["outcomes"].get(ACCEPTED_TIMEOUT) == 1


def test_batch_of_more_than_100_is_refused(resend_wire: ResendWire) -> None:
    with pytest.raises(ResendError) as caught:
        resend.Batch.send([mail(f"n{i}@example.com") for i in range(101)])  # type: ignore[misc]
    assert int(caught.value.code) == 422
    assert resend_wire.accepted_count() == 0
