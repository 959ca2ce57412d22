"""End to end: real worker processes on a real Redis, the real SDKs against the wires."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import provider_env
from tests.flow import change_stage, make_due
from tests.pg import connect, new_registration
from tests.worker_process import WorkerProcess, celery_worker_argv, regnotify_worker_argv

pytestmark = pytest.mark.e2e


@pytest.fixture()
def worker_env(clean_db, redis_server, twilio_wire, resend_wire) -> dict[str, str]:
    """The environment a worker process gets: test database, broker and wires."""
    env = provider_env(clean_db, redis_server.url, twilio_wire, resend_wire)
    env["SWEEP_AFTER_S"] = "30"
    return env


def _wait_settled(url: str, expected: int, timeout: float = 60.0) -> list[dict]:
    """Wait until `expected` deliveries exist and none is still queued or sending."""
    deadline = time.monotonic() + timeout
    with connect(url) as conn:
        while True:
            rows = conn.execute("SELECT * FROM registration_notifications ORDER BY id").fetchall()
            moving = [r for r in rows if r["status"] in ("queued", "sending")]
            if len(rows) >= expected and not moving:
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not settled after {timeout}s: {len(rows)} rows, {len(moving)} moving")
            time.sleep(0.2)


def test_celery_a_tasks_worker_drains_a_burst_exactly_once(
    tmp_path: Path, broker_app, worker_env, clean_db, conn, twilio_wire, resend_wire
):
    worker = WorkerProcess(celery_worker_argv(4), worker_env, tmp_path / "worker.log")
    worker.start(broker_app)
    try:
        queues = broker_app.control.inspect(timeout=2).active_queues() or {}
        consumed = {q["name"] for qs in queues.values() for q in qs}
        assert consumed == {"notifications", "sms", "email"}

        regs = [new_registration(conn, customer_phone=f"+1555300{i:04d}",
                                 customer_email=f"c{i}@example.com") for i in range(40)]
        for reg in regs:
            change_stage(conn, reg, "documents_collected")
            change_stage(conn, reg, "submitted_to_dmv")
        twilio_wire.configure(latency=0.02)
        resend_wire.configure(latency=0.02)
        make_due(conn)
        broker_app.send_task("process_notification_queue")
        rows = _wait_settled(clean_db, expected=80)
    finally:
        worker.stop()
    assert {r["status"] for r in rows} == {"sent"}
    assert twilio_wire.accepted_count() == 40 and resend_wire.accepted_count() == 40
    assert not twilio_wire.duplicates() and not resend_wire.duplicates()
    assert all("submitted" in s.body for s in twilio_wire.sends())
    assert {r["provider_message_id"] for r in rows} == (
        {s.id for s in twilio_wire.sends()} | {s.id for s in resend_wire.sends()})


def test_regnotify_worker_honours_retry_after_between_attempts(
    tmp_path: Path, broker_app, worker_env, clean_db, conn, twilio_wire
):
    phone = "+15553999999"
    twilio_wire.script(phone, ["429:2", "accept"])
    reg = new_registration(conn, customer_phone=phone, notification_pref="sms")
    change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    worker = WorkerProcess(regnotify_worker_argv(2), worker_env, tmp_path / "worker.log")
    worker.start(broker_app)
    # The first thing the worker says: which providers are live.
    assert "regnotify worker: sms: twilio (live), email: resend (live)" in (
        worker.log_path.read_text(errors="replace"))
    try:
        broker_app.send_task("process_notification_queue")
        _wait_settled(clean_db, expected=2)
    finally:
        worker.stop()
    sms = conn.execute("SELECT * FROM registration_notifications WHERE channel = 'sms'").fetchone()
    assert sms["status"] == "sent" and sms["attempts"] == 2
    # At INFO a task is not two log lines (received, succeeded): Flower shows
    # each task; the worker's own lines are still there.
    log = worker.log_path.read_text(errors="replace")
    assert "ready." in log and " received" not in log and " succeeded in " not in log
    first, second = twilio_wire.attempts()
    assert second.received_mono - first.received_mono >= 2.0
    assert twilio_wire.accepted_count() == 1


def test_a_spanish_customer_gets_spanish_messages_through_a_real_worker(
    tmp_path: Path, broker_app, worker_env, clean_db, conn, twilio_wire, resend_wire
):
    # One customer reads Spanish; a second one's text fails for good, so the
    # e-mail that replaces it carries the Spanish fallback line.
    spanish = new_registration(conn, customer_name="Lucía Gómez", customer_phone="+15554440001",
                               customer_email="lucia@example.com", language="es")
    bounced = new_registration(conn, customer_name="Pedro Ruiz", customer_phone="+15554440002",
                               customer_email="pedro@example.com", language="es",
                               notification_pref="sms")
    english = new_registration(conn, customer_phone="+15554440003",
                               customer_email="dana@example.com")
    twilio_wire.script("+15554440002", ["21614"])
    for reg in (spanish, bounced, english):
        change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    worker = WorkerProcess(regnotify_worker_argv(2), worker_env, tmp_path / "worker.log")
    worker.start(broker_app)
    try:
        broker_app.send_task("process_notification_queue")
        _wait_settled(clean_db, expected=6)
    finally:
        worker.stop()

    [text] = twilio_wire.sends("+15554440001")
    assert text.body == ("Lone Star Auto: placas y etiqueta listas para su 2019 Honda Civic. "
                         "Responda STOP para cancelar.")
    [mail] = resend_wire.sends("lucia@example.com")
    assert mail.subject == "Lone Star Auto: Placas y etiqueta listas para su 2019 Honda Civic"
    assert "Hola, Lucía:" in mail.text and "Paso actual: Placas y etiqueta listas" in mail.text
    assert '<html lang="es">' in (mail.html or "") and "están listas" in (mail.html or "")

    [fallback] = resend_wire.sends("pedro@example.com")
    assert "No pudimos enviarle un mensaje de texto" in fallback.text

    [english_text] = twilio_wire.sends("+15554440003")
    assert english_text.body.endswith("Reply STOP to opt out.")
    languages = {(r["registration_id"], r["channel"]): r["language"] for r in conn.execute(
        "SELECT registration_id::text, channel, language FROM registration_notifications "
        "WHERE status <> 'skipped' OR language IS NOT NULL")}
    assert languages[spanish, "sms"] == languages[spanish, "email"] == "es"
    assert languages[bounced, "email"] == "es" and languages[english, "sms"] == "en"
