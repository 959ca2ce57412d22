"""A run with real-looking secrets: the worker's and the relay's logs contain none of them."""

from __future__ import annotations

import base64
import secrets
import time
from pathlib import Path

import httpx
import pytest

from tasks.local.embedded_postgres import free_port
from tests.conftest import TWILIO_FROM
from tests.flow import change_stage, make_due
from tests.pg import new_registration
from tests.relay_helpers import resend_event, resend_post, twilio_post
from tests.reliability.conftest import wait_drained
from tests.test_relay_process import RelayProcess
from tests.wire.resend_wire import ResendWire
from tests.wire.twilio_wire import TwilioWire
from tests.worker_process import WorkerProcess, regnotify_worker_argv

pytestmark = pytest.mark.reliability

PHONES = ["+15551234567", "+15005550001", "+15559876543"]


def test_logs_hold_no_secret_and_no_full_phone(tmp_path: Path, clean_db, conn, redis_server):
    from tasks.broker.app import create_app

    account_sid = "AC" + secrets.token_hex(16)
    auth_token = secrets.token_hex(16)
    api_key = "re_" + secrets.token_urlsafe(24)
    relay_token = secrets.token_urlsafe(32)
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    db_password = "pw-" + secrets.token_urlsafe(12)
    # Trust authentication ignores the password, but it is in every URL we log.
    database_url = clean_db.replace("postgres@", f"postgres:{db_password}@")
    public_url = "https://relay.dealer.test"

    with TwilioWire(account_sid=account_sid, auth_token=auth_token) as twilio, \
            ResendWire(api_key=api_key) as resend:
        twilio.script(PHONES[2], ["500", "429:1", "accept"])
        env = {
            "DATABASE_URL": database_url, "CELERY_BROKER_URL": redis_server.url,
            "SMS_PROVIDER": "twilio", "EMAIL_PROVIDER": "resend",
            "TWILIO_ACCOUNT_SID": account_sid, "TWILIO_AUTH_TOKEN": auth_token,
            "TWILIO_FROM_NUMBER": TWILIO_FROM, "TWILIO_API_BASE_URL": twilio.url,
            "RESEND_API_KEY": api_key, "RESEND_API_BASE_URL": resend.url,
            "EMAIL_FROM": "Lone Star Auto <registrations@lonestar.test>",
            "RELAY_TOKEN": relay_token, "RESEND_WEBHOOK_SECRET": webhook_secret,
            "RELAY_PUBLIC_URL": public_url, "SEND_RETRY_BACKOFF_BASE": "0.1",
            "TWILIO_RATE_PER_S": "1000", "RESEND_RATE_PER_S": "1000",
        }
        app = create_app()
        app.conf.broker_url = redis_server.url
        worker = WorkerProcess([*regnotify_worker_argv(4), "-l", "debug"], env,
                               tmp_path / "worker.log")
        port = free_port()
        relay = RelayProcess(["--port", str(port)], env, tmp_path / "relay.log")
        try:
            worker.start(app)
            relay.wait_healthy(f"http://127.0.0.1:{port}")
            for i, phone in enumerate(PHONES):
                reg = new_registration(conn, customer_phone=phone,
                                       customer_email=f"secret{i}@example.com")
                change_stage(conn, reg, "sticker_ready")
            make_due(conn)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                assert client.post("/tick", json={"at": "now"},
                                   headers={"Authorization": f"Bearer {relay_token}"}
                                   ).status_code == 202
                assert client.post("/tick", headers={"Authorization": "Bearer wrong"}
                                   ).status_code == 401
                wait_drained(clean_db, 60)
                sid = twilio.sends(PHONES[0])[0].id
                form = {"MessageSid": sid, "MessageStatus": "delivered", "To": PHONES[0]}
                assert twilio_post(client, "/webhooks/twilio/status", form, token=auth_token,
                                   public_url=public_url).status_code == 200
                assert twilio_post(client, "/webhooks/twilio/inbound",
                                   {"From": PHONES[2], "Body": "STOP"}, token=auth_token,
                                   public_url=public_url).status_code == 200
                assert twilio_post(client, "/webhooks/twilio/status", form,
                                   token="forged", public_url=public_url).status_code == 403
                email_id = resend.sends()[0].id
                assert resend_post(client, resend_event("email.delivered", email_id), "msg_1",
                                   secret=webhook_secret).status_code == 200
            time.sleep(0.5)
        finally:
            worker.stop()
            relay.proc.terminate()
            relay.proc.wait(10)
    logs = worker.log_path.read_text(errors="replace") + relay.log()
    assert "delivery" in logs and "tick" in logs  # the logs are not simply empty
    for name, value in {"twilio auth token": auth_token, "resend key": api_key,
                        "relay token": relay_token, "webhook secret": webhook_secret,
                        "webhook secret body": webhook_secret.removeprefix("whsec_"),
                        "database password": db_password}.items():
        assert value not in logs, f"{name} leaked into the logs"
    for phone in PHONES:
        assert phone not in logs and phone.lstrip("+") not in logs, f"{phone} in the logs"
