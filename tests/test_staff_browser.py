"""The staff console in a real browser on the real stack: a relay process on 127.0.0.1 with
the console e-mail provider (the code is a line on its output), a real worker sending
through the Twilio and Resend wires, Chromium driven by Selenium, axe-core on every page.
Screenshots at 390 px and 1280 px go to test-artifacts/staff/."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.local.embedded_postgres import free_port
from tests.conftest import provider_env
from tests.pg import new_registration
from tests.test_portal_browser import CHROMEDRIVER, CHROMIUM, DESKTOP, PHONE, ROOT, Browser
from tests.test_portal_browser import _wait_http as wait_http
from tests.worker_process import WorkerProcess, regnotify_worker_argv

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.staff_helpers"]

SHOTS = ROOT / "test-artifacts" / "staff"
STAFF = "sam@dealer.example"
ANA, BEN = "+17135550101", "+17135550102"
CODE_LINE = re.compile(r"staff sign-in code for (\S+): (\d{6})")


class StaffBrowser(Browser):
    def shot(self, name: str) -> None:
        """Full-page PNGs at a phone's width and a desktop's; axe on the page at each."""
        found: list[Any] = []
        for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
            self._metrics(size)
            height = self.driver.execute_script(
                "return Math.ceil(document.documentElement.scrollHeight)")
            png = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size[0], "height": max(height, size[1]),
                         "scale": 1}})
            (SHOTS / f"{name}-{label}.png").write_bytes(base64.b64decode(png["data"]))
            found += self.check_axe()
        self._metrics(PHONE)
        self.violations[name] = found


@pytest.fixture()
def stack(tmp_path, broker_app, clean_db, conn, redis_server, twilio_wire,
          resend_wire) -> Iterator[dict[str, Any]]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromium-driver are not installed")
    pytest.importorskip("selenium")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**provider_env(clean_db, redis_server.url, twilio_wire, resend_wire),
           "RELAY_PUBLIC_URL": url, "PYTHONUNBUFFERED": "1", "SWEEP_AFTER_S": "30"}
    worker = WorkerProcess(regnotify_worker_argv(2), env, tmp_path / "worker.log")
    # The relay's own e-mail provider is the console: staff codes are a line
    # on its output (the worker still e-mails customers through Resend).
    relay_env = {**env, "EMAIL_PROVIDER": "console"}
    relay_env.pop("RESEND_API_KEY")
    relay_log = tmp_path / "relay.log"
    relay = WorkerProcess([sys.executable, "-m", "tasks.cli", "relay", "--local-only",
                           "--port", str(port)], relay_env, relay_log)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        worker.start(broker_app)
        relay.proc = subprocess.Popen(relay.argv, env=relay.env, stdout=relay_log.open("ab"),
                                      stderr=subprocess.STDOUT, cwd=ROOT,
                                      start_new_session=True)
        wait_http(url + "/healthz")
        yield {"url": url, "relay_log": relay_log, "conn": conn, "twilio": twilio_wire,
               "tmp": tmp_path}
    finally:
        relay.stop()
        worker.stop()


def _code(log: Path, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = CODE_LINE.findall(log.read_text(errors="replace"))
        if found:
            assert found[-1][0] == "s**@dealer.example" and STAFF not in log.read_text()
            return found[-1][1]
        time.sleep(0.1)
    raise AssertionError("no staff sign-in code on the relay's output")


def _wait(conn, sql: str, params: tuple, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute(sql, params).fetchone()
        if row:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {sql} {params}")
        time.sleep(0.2)


def test_staff_sign_in_find_resend_answer_and_send_by_hand(stack):
    conn = stack["conn"]
    conn.execute("INSERT INTO staff_members (email, name) VALUES (%s, 'Sam Staff')", (STAFF,))
    ana = new_registration(conn, customer_name="Ana Lopez", customer_phone=ANA,
                           customer_email="ana@example.com", vin="1HGCM82633A004352",
                           vehicle_make="Toyota", vehicle_model="Corolla", vehicle_year=2022,
                           notification_pref="sms", current_stage="sticker_ready")
    ben = new_registration(conn, customer_name="Ben Ortiz", customer_phone=BEN,
                           customer_email="ben@example.com", vehicle_make="Ford",
                           vehicle_model="Ranger", vehicle_year=2021)
    failed = conn.execute(
        "INSERT INTO registration_notifications (registration_id, channel, recipient, status, "
        "attempts, error_code, error_message, old_stage, new_stage, created_at, updated_at) "
        "VALUES (%s, 'sms', %s, 'failed', 3, '30003', 'Unreachable destination handset', "
        "'dmv_processing', 'sticker_ready', now() - interval '2 hours', "
        "now() - interval '2 hours') RETURNING id", (ana, ANA)).fetchone()["id"]
    conn.execute("INSERT INTO registration_notifications (registration_id, channel, recipient, "
                 "status, attempts, new_stage, sent_at) VALUES (%s, 'email', "
                 "'ben@example.com', 'delivered', 1, 'documents_collected', now())", (ben,))
    reply = conn.execute(
        "INSERT INTO inbound_messages (message_sid, from_phone, body, registration_id) VALUES "
        "('SMreply1', %s, 'Can I pick the plates up on Saturday?', %s) RETURNING id",
        (BEN, ben)).fetchone()["id"]
    # No quiet hours while the failed text is re-sent: a re-send is no bypass,
    # and would wait for the morning like any retry.
    conn.execute("UPDATE notification_config SET quiet_hours_channels = '{}'")
    url = stack["url"]
    browser = StaffBrowser(stack["tmp"] / "chrome", "en")
    try:
        browser.driver.get(url + "/staff")
        assert "Sign in with your staff e-mail address" in browser.text()
        browser.shot("1-sign-in")
        browser.fill("email", STAFF)
        browser.press("E-mail me a code")
        assert "If s**@dealer.example belongs to a staff member" in browser.text()
        browser.shot("2-code")
        browser.fill("code", _code(stack["relay_log"]))
        browser.press("Sign in")
        page = browser.text()
        assert "Messages" in page and "Ana Lopez" in page and "Ben Ortiz" in page
        browser.shot("3-messages")

        browser.fill("q", "(713) 555-0101")
        browser.press("Show")
        page = browser.text()
        assert "Ana Lopez" in page and "Ben Ortiz" not in page
        assert "Failed: the phone was off or out of reach (30003)" in page
        browser.shot("4-search")

        link = browser.driver.find_element("link text", "Ana Lopez").get_attribute("href")
        assert link == f"{url}/staff/registrations/{ana}"
        browser.driver.get(link)
        page = browser.text()
        assert "2022 Toyota Corolla" in page and "Re-send message" in page
        browser.shot("5-registration")
        browser.driver.get(url + "/staff/attention")
        assert "Failed: the phone was off or out of reach (30003)" in browser.text()
        browser.shot("5-attention-failed")
        browser.driver.get(link)

        browser.press(f"Re-send message {failed}")
        assert "The failed message is being sent again." in browser.text()
        _wait(conn, "SELECT 1 FROM registration_notifications WHERE id = %s AND status = 'sent'",
              (failed,))
        assert stack["twilio"].sends(ANA), "the worker sent nothing to Ana"
        browser.driver.get(f"{url}/staff/registrations/{ana}")
        page = browser.text()
        assert "Sent (the provider accepted it)" in page
        assert "Staff: sam@dealer.example re-sent a failed message" in page
        browser.shot("6-resent")

        # Quiet hours for texts all day: only the bypass sends now.
        conn.execute("UPDATE notification_config SET quiet_hours_channels = '{sms}', "
                     "quiet_hours_start = '00:00', quiet_hours_end = '23:59:59.999'")
        sent_before = len(stack["twilio"].sends(ANA))
        browser.press("Send now, even in quiet hours")
        _wait(conn, "SELECT 1 FROM registration_notifications WHERE registration_id = %s "
              "AND queue_id IS NOT NULL AND status = 'sent'", (ana,))
        assert len(stack["twilio"].sends(ANA)) == sent_before + 1
        browser.driver.get(f"{url}/staff/registrations/{ana}")
        assert "sent by hand (quiet hours bypassed)" in browser.text()

        browser.driver.get(url + "/staff/attention")
        page = browser.text()
        assert "Can I pick the plates up on Saturday?" in page
        browser.shot("7-attention")

        browser.driver.get(url + "/staff/replies")
        browser.shot("8-replies")
        browser.press(f"Mark handled (reply {reply})")
        row = conn.execute("SELECT actor_email FROM staff_actions WHERE action = "
                           "'mark_handled' AND detail ->> 'id' = %s", (str(reply),)).fetchone()
        assert row["actor_email"] == STAFF
        browser.driver.get(url + "/staff/replies?show=handled")
        assert "Handled by sam@dealer.example" in browser.text()

        # A burst waiting, and a text held for quiet hours, for the queue page.
        conn.execute("UPDATE registrations SET current_stage = 'submitted_to_dmv' WHERE id = %s",
                     (ben,))
        conn.execute(
            "INSERT INTO registration_notifications (registration_id, channel, recipient, "
            "status, new_stage, hold_reason, held_until, hold_zone) VALUES (%s, 'sms', %s, "
            "'queued', 'sticker_ready', 'quiet_hours', now() + interval '9 hours', "
            "'America/Chicago')", (ana, ANA))
        browser.driver.get(url + "/staff/queue")
        page = browser.text()
        assert "Ben Ortiz" in page and "Ana Lopez" in page
        browser.shot("9-queue")
    finally:
        browser.quit()
    bad = {name: v for name, v in browser.violations.items() if v}
    assert not bad, bad
