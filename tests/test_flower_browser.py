"""Flower in a real browser: after a few deliveries the send tasks are listed, with their args."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tasks.local.embedded_postgres import free_port
from tests.conftest import provider_env
from tests.flow import change_stage, make_due
from tests.pg import new_registration
from tests.test_worker_e2e import _wait_settled
from tests.worker_process import WorkerProcess, regnotify_worker_argv

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("chromium is not installed (scripts/test installs it: "
                    "apt-get install chromium)")
    return found


def _wait_flower(url: str, auth: str, timeout: float = 30) -> None:
    token = base64.b64encode(auth.encode()).decode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        req = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise AssertionError("Flower did not answer")


def _flower_tasks(base: str, auth: str, want: int, timeout: float = 30) -> dict:
    token = base64.b64encode(auth.encode()).decode()
    deadline = time.monotonic() + timeout
    tasks: dict = {}
    while time.monotonic() < deadline:
        req = urllib.request.Request(base + "/api/tasks",
                                     headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            tasks = json.loads(resp.read())
        done = [t for t in tasks.values() if t.get("state") == "SUCCESS"]
        if len(done) >= want:
            return tasks
        time.sleep(0.3)
    raise AssertionError(f"Flower knows {len(tasks)} tasks, wanted {want}")


def test_flower_lists_the_send_tasks(tmp_path, broker_app, clean_db, conn, redis_server,
                                     twilio_wire, resend_wire):
    chromium = _chromium()
    env = provider_env(clean_db, redis_server.url, twilio_wire, resend_wire)
    port, auth = free_port(), "admin:flower-test-pass"
    flower = WorkerProcess(
        [sys.executable, "-m", "celery", "-A", "tasks", "flower", f"--port={port}",
         "--address=127.0.0.1", f"--basic-auth={auth}"], env, tmp_path / "flower.log")
    worker = WorkerProcess(regnotify_worker_argv(2), env, tmp_path / "worker.log")
    try:
        worker.start(broker_app)
        flower.proc = subprocess.Popen(flower.argv, env=flower.env,
                                       stdout=(tmp_path / "flower.log").open("ab"),
                                       stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        _wait_flower(base + "/", auth)
        # Unauthenticated requests are refused.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "/tasks", timeout=5)
        assert refused.value.code == 401

        for i in range(3):
            reg = new_registration(conn, customer_phone=f"+1555500000{i}",
                                   customer_email=f"f{i}@example.com")
            change_stage(conn, reg, "sticker_ready")
        make_due(conn)
        broker_app.send_task("process_notification_queue")
        _wait_settled(clean_db, expected=6)
        # Flower learns of tasks from events, asynchronously: wait until it has
        # all 5: the queue run, three texts and one batch of the three e-mails.
        api = _flower_tasks(base, auth, want=5)

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "flower-tasks.png"
        shot.unlink(missing_ok=True)
        url = f"http://{auth}@127.0.0.1:{port}/tasks"
        common = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                  "--disable-dev-shm-usage", "--window-size=1400,900",
                  "--virtual-time-budget=8000"]
        # A profile each: a second browser on the same profile may exit at once.
        dom = subprocess.run([*common, f"--user-data-dir={tmp_path / 'chrome-dom'}",
                              "--dump-dom", url], capture_output=True, text=True, timeout=90)
        snap = subprocess.run([*common, f"--user-data-dir={tmp_path / 'chrome-shot'}",
                               f"--screenshot={shot}", url],
                              capture_output=True, text=True, timeout=90)
    finally:
        worker.stop()
        flower.stop()
    html = dom.stdout
    assert "send_sms" in html and "send_email_batch" in html, html[-3000:]
    assert "process_notification_queue" in html
    # Arguments and results tell a person which delivery a task sent, and how.
    texts = [t for t in api.values() if t["name"] == "send_sms"]
    assert len(texts) == 3
    assert all(t["args"].startswith("(delivery=") for t in texts)
    assert all("sent" in (t["result"] or "") for t in texts)
    # The e-mails went as one batch, whose arguments name each delivery.
    (batch,) = [t for t in api.values() if t["name"] == "send_email_batch"]
    email_ids = [r["id"] for r in conn.execute(
        "SELECT id FROM registration_notifications WHERE channel = 'email' ORDER BY id")]
    assert batch["args"] == f"(deliveries={email_ids}, email)"
    assert "3 sent" in (batch["result"] or "")
    assert shot.exists() and shot.stat().st_size > 10_000, snap.stderr[-2000:]
