"""The sign-in stand-ins speak their services' formats: the twilio SDK's Verify client and
plain HTTP as Supabase's clients send it, including the errors."""

from __future__ import annotations

from collections.abc import Iterator

import jwt
import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tests.wire.supabase_auth_wire import SupabaseAuthWire
from tests.wire.twilio_verify_wire import TwilioVerifyWire

PHONE = "+15551234567"


@pytest.fixture(scope="module")
def verify_wire() -> Iterator[TwilioVerifyWire]:
    with TwilioVerifyWire() as wire:
        yield wire


@pytest.fixture(scope="module")
def auth_wire() -> Iterator[SupabaseAuthWire]:
    with SupabaseAuthWire() as wire:
        yield wire


def _service(wire: TwilioVerifyWire, token: str | None = None):  # type: ignore[no-untyped-def]
    client = Client(wire.account_sid, token or wire.auth_token)
    client.edge = client.region = None
    client.verify.base_url = wire.url
    return client.verify.v2.services(wire.service_sid)


def test_verify_through_the_sdk_with_its_errors(verify_wire):
    verify_wire.reset(config=True)
    service = _service(verify_wire)
    started = service.verifications.create(to=PHONE, channel="sms")
    assert started.status == "pending" and started.sid.startswith("VE")
    assert len(started.send_code_attempts) == 1
    code = verify_wire.last_code(PHONE)
    assert code in verify_wire.sends(PHONE)[-1].body
    wrong = service.verification_checks.create(to=PHONE, code="000000" if code != "000000"
                                               else "111111")
    assert wrong.status == "pending" and wrong.valid is False
    right = service.verification_checks.create(to=PHONE, code=code)
    assert right.status == "approved" and right.valid is True
    with pytest.raises(TwilioRestException) as over:  # used once: gone
        service.verification_checks.create(to=PHONE, code=code)
    assert over.value.status == 404 and over.value.code == 20404
    with pytest.raises(TwilioRestException) as auth:
        _service(verify_wire, "wrong-token").verifications.create(to=PHONE, channel="sms")
    assert auth.value.status == 401 and auth.value.code == 20003


def test_verify_limits_checks_sends_and_time(verify_wire):
    verify_wire.reset(config=True)
    service = _service(verify_wire)
    service.verifications.create(to=PHONE, channel="sms")
    for _ in range(5):
        assert service.verification_checks.create(to=PHONE, code="x").valid is False
    with pytest.raises(TwilioRestException) as locked:
        service.verification_checks.create(to=PHONE, code=verify_wire.last_code(PHONE))
    assert (locked.value.status, locked.value.code) == (429, 60202)
    other = "+15557654321"
    for _ in range(5):
        service.verifications.create(to=other, channel="sms")
    with pytest.raises(TwilioRestException) as sends:
        service.verifications.create(to=other, channel="sms")
    assert (sends.value.status, sends.value.code) == (429, 60203)
    verify_wire.age_code(other, 601)
    with pytest.raises(TwilioRestException) as expired:
        service.verification_checks.create(to=other, code=verify_wire.last_code(other))
    assert expired.value.status == 404


def _post(wire: SupabaseAuthWire, path: str, body: dict, ip: str = "203.0.113.9",
          key: str | None = None) -> requests.Response:
    return requests.post(f"{wire.url}/auth/v1/{path}", json=body, timeout=5,
                         headers={"apikey": key or wire.anon_key, "Sb-Forwarded-For": ip})


def test_supabase_otp_and_verify_with_their_errors(auth_wire):
    auth_wire.reset(config=True)
    assert _post(auth_wire, "otp", {"phone": PHONE}, key="nope").status_code == 401
    sent = _post(auth_wire, "otp", {"phone": PHONE})
    assert sent.status_code == 200 and sent.json()["message_id"].startswith("SM")
    again = _post(auth_wire, "otp", {"phone": PHONE})
    assert again.status_code == 429 and again.json()["error_code"] == "over_sms_send_rate_limit"
    code = auth_wire.last_code(PHONE)
    bad = _post(auth_wire, "verify", {"type": "sms", "phone": PHONE, "token": "x"})
    assert bad.status_code == 403 and bad.json() == {
        "code": 403, "error_code": "otp_expired", "msg": "Token has expired or is invalid"}
    good = _post(auth_wire, "verify", {"type": "sms", "phone": PHONE, "token": code}).json()
    claims = jwt.decode(good["access_token"], auth_wire.jwt_secret, algorithms=["HS256"],
                        audience="authenticated", issuer=auth_wire.url + "/auth/v1")
    assert claims["phone"] == PHONE[1:] and claims["role"] == "authenticated"
    assert good["expires_in"] == 3600 and good["user"]["id"] == claims["sub"]
    replay = _post(auth_wire, "verify", {"type": "sms", "phone": PHONE, "token": code})
    assert replay.status_code == 403
    assert auth_wire.client_ips[-1] == "203.0.113.9"


def test_supabase_expiry_ip_limit_and_signups_off(auth_wire):
    auth_wire.reset(config=True)
    _post(auth_wire, "otp", {"phone": PHONE})
    code = auth_wire.last_code(PHONE)
    auth_wire.age_code(PHONE, auth_wire.otp_expiry + 1)
    assert _post(auth_wire, "verify", {"type": "sms", "phone": PHONE,
                                       "token": code}).status_code == 403
    limit, auth_wire.otp_ip_limit = auth_wire.otp_ip_limit, 2
    auth_wire.allow_signups = False
    try:
        for number in ("+15550001111", "+15550001112"):
            off = _post(auth_wire, "otp", {"phone": number}, ip="198.51.100.1")
            assert off.status_code == 422 and off.json()["error_code"] == "otp_disabled"
        over = _post(auth_wire, "otp", {"phone": "+15550001114"}, ip="198.51.100.1")
        assert over.status_code == 429
        assert over.json()["error_code"] == "over_request_rate_limit"
        # Another customer's address has its own bucket.
        assert _post(auth_wire, "otp", {"phone": "+15550001113"},
                     ip="198.51.100.2").status_code == 422
    finally:
        auth_wire.otp_ip_limit, auth_wire.allow_signups = limit, True
