"""GET /metrics: queue and delivery figures from the database, worker figures from Redis."""

from __future__ import annotations

import re

import pytest
import redis
from starlette.testclient import TestClient

from tasks.relay import create_app
from tests.flow import change_stage, make_due, run_tick
from tests.pg import new_registration
from tests.relay_helpers import relay_settings

pytestmark = pytest.mark.usefixtures("pipeline")


def _value(text: str, name: str, labels: str = "") -> float:
    pattern = "^" + re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{name}{{{labels}}} not in:\n{text}"
    return float(match.group(1))


def test_metrics_report_queue_deliveries_latency_and_retries(
    clean_db, conn, redis_server, twilio_wire, resend_wire
):
    redis.Redis.from_url(redis_server.url).flushdb()
    sent = new_registration(conn, customer_phone="+15558880001", notification_pref="sms")
    retried = new_registration(conn, customer_phone="+15558880002", notification_pref="sms")
    failing = new_registration(conn, customer_phone="+15005550001", notification_pref="sms",
                               customer_email=None)  # no e-mail fallback
    waiting = new_registration(conn, customer_phone="+15558880003")
    twilio_wire.script("+15558880002", ["500", "accept"])
    for reg in (sent, retried, failing):
        change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    run_tick()
    change_stage(conn, waiting, "documents_collected")  # pending, not due
    conn.execute("INSERT INTO registrations (customer_name) VALUES ('due')")
    due = conn.execute("SELECT id FROM registrations WHERE customer_name = 'due'").fetchone()["id"]
    change_stage(conn, str(due), "documents_collected")
    conn.execute("UPDATE notification_queue SET send_after = now() - interval '30 seconds' "
                 "WHERE registration_id = %s", (due,))

    app = create_app(relay_settings(database_url=clean_db))
    with TestClient(app) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert _value(text, "regnotify_database_up") == 1
    assert _value(text, "regnotify_queue_depth") == 2
    assert _value(text, "regnotify_queue_due") == 1
    assert 29 <= _value(text, "regnotify_queue_oldest_due_age_seconds") < 120
    assert _value(text, "regnotify_deliveries_24h", 'channel="sms",status="sent"') == 2
    assert _value(text, "regnotify_deliveries_24h", 'channel="sms",status="failed"') == 1
    assert _value(text, "regnotify_deliveries_24h", 'channel="email",status="skipped"') == 3
    assert _value(text, "regnotify_delivery_retries_24h", 'channel="sms"') == 1
    # Recorded by the send tasks (here eager, in this process) through Redis: two
    # sends, a 500, the lookup the 500 makes the retry do, and the 21211.
    assert _value(text, "regnotify_provider_request_seconds_count", 'provider="twilio"') == 5
    assert _value(text, "regnotify_provider_request_seconds_bucket",
                  'le="+Inf",provider="twilio"') == 5
    assert _value(text, "regnotify_provider_requests_total",
                  'outcome="lookup",provider="twilio"') == 1
    assert _value(text, "regnotify_provider_requests_total",
                  'outcome="retry",provider="twilio"') == 1
    assert _value(text, "regnotify_provider_requests_total",
                  'outcome="sent",provider="twilio"') == 2
    assert _value(text, "regnotify_provider_requests_total",
                  'outcome="failed",provider="twilio"') == 1
    assert _value(text, "regnotify_send_retries_total", 'channel="sms"') == 1
    assert _value(text, "regnotify_queue_runs_total", 'reason="tick"') >= 1


def test_metrics_say_when_the_database_is_down(redis_server):
    app = create_app(relay_settings(database_url="postgresql://nobody@127.0.0.1:1/none"))
    with TestClient(app) as client:
        text = client.get("/metrics").text
    assert _value(text, "regnotify_database_up") == 0
    assert "regnotify_queue_depth" not in text
