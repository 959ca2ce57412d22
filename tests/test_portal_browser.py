"""The customer page in a real browser on the real stack: a relay process printing console
codes, a real worker sending through the Twilio and Resend wires, Chromium driven by
Selenium, axe-core checking each page. Screenshots (390 px and desktop) go to
test-artifacts/portal/."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.local.embedded_postgres import free_port
from tasks.messages.rendering import sms_opt_out
from tasks.portal.i18n import Words
from tests.conftest import provider_env
from tests.flow import change_stage, make_due
from tests.pg import new_registration
from tests.portal_helpers import CODE_LINE
from tests.worker_process import WorkerProcess, regnotify_worker_argv

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-artifacts" / "portal"
AXE = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PHONE = (390, 844, 2)
DESKTOP = (1280, 900, 1)
CUSTOMERS = {"en": ("+15551110001", "555 111 0001"), "es": ("+15551110002", "+1 555-111-0002")}


def _axe_source() -> str:
    """axe-core from the npm registry, installed into .cache/axe on first use."""
    if not AXE.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed (scripts/setup installs it with REGNOTIFY_BROWSER=1)")
        subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix",
                        str(AXE.parents[2]), "axe-core@4"], check=True, timeout=300)
    return AXE.read_text(encoding="utf-8")


class Browser:
    """One Chromium profile, with full-page screenshots at both widths and axe checks."""

    def __init__(self, profile: Path, lang: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    f"--user-data-dir={profile}", f"--lang={lang}"):
            options.add_argument(arg)
        options.add_experimental_option("prefs", {"intl.accept_languages": lang})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(30)
        self._metrics(PHONE)
        self.axe = _axe_source()
        self.violations: dict[str, list[Any]] = {}

    def _metrics(self, size: tuple[int, int, int]) -> None:
        width, height, scale = size
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": scale,
            "mobile": width < 600})

    def shot(self, name: str) -> None:
        """Full-page PNGs at a phone's width and a desktop's; axe on the page."""
        for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
            self._metrics(size)
            height = self.driver.execute_script(
                "return Math.ceil(document.documentElement.scrollHeight)")
            png = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size[0], "height": max(height, size[1]),
                         "scale": 1}})
            (SHOTS / f"{name}-{label}.png").write_bytes(base64.b64decode(png["data"]))
        self._metrics(PHONE)
        self.violations[name] = self.check_axe()

    def check_axe(self) -> list[Any]:
        self.driver.execute_script(self.axe + "\n;return 0;")
        return self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: "
            "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"
            ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, "
            "nodes: v.nodes.map(n => n.target.join(' '))}))))"
            ".catch(e => done([{id: 'axe-error', impact: String(e), nodes: []}]));")

    def text(self) -> str:
        from selenium.webdriver.common.by import By

        # Whitespace as one space: lines wrap differently at each width.
        return " ".join(self.driver.find_element(By.TAG_NAME, "main").text.split())

    def fill(self, field: str, value: str) -> None:
        from selenium.webdriver.common.by import By

        box = self.driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)

    def press(self, label: str) -> None:
        """Click a form's button and wait for the page it leads to."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.wait import WebDriverWait

        # A mark on the old page's window, gone once the next page loads. Waiting
        # for the old <html> element to go stale raced chromedriver mid-navigation
        # ("Node with given id does not belong to the document"), so every probe
        # that fails while the page is swapping is simply tried again.
        self.driver.execute_script("window.__regnotifyLeaving = true;")
        self.driver.find_element(By.XPATH, f"//button[normalize-space()='{label}']").click()
        WebDriverWait(self.driver, 15, ignored_exceptions=(WebDriverException,)).until(
            lambda d: d.execute_script(
                "return window.__regnotifyLeaving === undefined"
                " && document.readyState === 'complete';"))

    def choose(self, label: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']").click()

    def quit(self) -> None:
        self.driver.quit()


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")


def _wait_sent(conn, reg: str, stage: str, channels: set[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = conn.execute(
            "SELECT channel, status FROM registration_notifications "
            "WHERE registration_id = %s AND new_stage = %s", (reg, stage)).fetchall()
        done = {r["channel"] for r in rows if r["status"] in ("sent", "delivered")}
        others = [r for r in rows if r["channel"] not in channels]
        if done == channels and all(r["status"] == "skipped" for r in others):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{stage}: wanted {channels} sent, have {rows}")
        time.sleep(0.2)


@pytest.fixture()
def stack(tmp_path, broker_app, clean_db, conn, redis_server, twilio_wire,
          resend_wire) -> Iterator[dict[str, Any]]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromium-driver are not installed "
                    "(scripts/setup installs them with REGNOTIFY_BROWSER=1)")
    pytest.importorskip("selenium")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**provider_env(clean_db, redis_server.url, twilio_wire, resend_wire),
           "RELAY_PUBLIC_URL": url, "PYTHONUNBUFFERED": "1"}
    worker = WorkerProcess(regnotify_worker_argv(2), env, tmp_path / "worker.log")
    relay_log = tmp_path / "relay.log"
    relay = WorkerProcess([sys.executable, "-m", "tasks.cli", "relay", "--local-only",
                           "--port", str(port)], env, relay_log)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        worker.start(broker_app)
        relay.proc = subprocess.Popen(relay.argv, env=relay.env, stdout=relay_log.open("ab"),
                                      stderr=subprocess.STDOUT, cwd=ROOT,
                                      start_new_session=True)
        _wait_http(url + "/healthz")
        yield {"url": url, "relay_log": relay_log, "broker": broker_app, "conn": conn,
               "twilio": twilio_wire, "resend": resend_wire, "tmp": tmp_path}
    finally:
        relay.stop()
        worker.stop()


def _stage(stack: dict[str, Any], reg: str, stage: str, channels: set[str]) -> None:
    change_stage(stack["conn"], reg, stage)
    make_due(stack["conn"])
    stack["broker"].send_task("process_notification_queue")
    _wait_sent(stack["conn"], reg, stage, channels)


def _console_code(log: Path, masked: str, seen: int, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [c for m, c in CODE_LINE.findall(log.read_text(errors="replace")) if m == masked]
        if len(found) > seen:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError(f"no sign-in code for {masked} on the relay's output")


@pytest.mark.parametrize("lang", ["en", "es"])
def test_customer_follows_a_registration_on_a_phone(stack, lang):
    w = Words(lang)
    phone, typed = CUSTOMERS[lang]
    conn = stack["conn"]
    reg = new_registration(conn, customer_phone=phone, vehicle_make="Toyota",
                           vehicle_model="Corolla", vehicle_year=2022,
                           customer_email=f"{lang}@example.com")
    new_registration(conn, customer_phone="+15551119999", vehicle_make="Ford",
                     vehicle_model="Ranger")
    # The first message's link is how the customer arrives.
    _stage(stack, reg, "documents_collected", {"sms", "email"})
    body = stack["twilio"].sends(phone)[-1].body
    link = re.search(r"http://\S+/portal", body)
    assert link and link.group(0) == stack["url"] + "/portal", body
    masked = "+*******" + phone[-4:]
    browser = Browser(stack["tmp"] / f"chrome-{lang}", lang)
    step = lambda n, name: f"{lang}-{n}-{name}"  # noqa: E731
    try:
        # axe finds what it should: an input without a label, on a page of its own.
        browser.driver.get("data:text/html,<html lang=en><title>t</title><main><input></main>")
        assert "label" in {v["id"] for v in browser.check_axe()}
        browser.driver.get(link.group(0))
        assert browser.driver.find_element("tag name", "html").get_attribute("lang") == lang
        assert w("signin.intro") in browser.text()
        browser.shot(step(1, "sign-in"))

        browser.fill("phone", typed)
        browser.press(w("signin.send"))
        assert w("signin.code_sent", phone=masked) in browser.text()
        browser.shot(step(2, "code"))

        code = _console_code(stack["relay_log"], masked, 0)
        browser.fill("code", code)
        browser.press(w("signin.sign_in"))
        page = browser.text()
        assert w("home.step_of", n=2, total=6, stage=w.stage("documents_collected", "")) in page
        assert "2022 Toyota Corolla" in page and "Ford" not in page
        assert f"{w('channel.sms')}: {w.stage('documents_collected', '')}" in page
        browser.shot(step(3, "signed-in"))

        _stage(stack, reg, "submitted_to_dmv", {"sms", "email"})
        browser.driver.get(stack["url"] + "/portal")
        page = browser.text()
        submitted = w.stage("submitted_to_dmv", "")
        assert w("home.step_of", n=3, total=6, stage=submitted) in page
        assert f"{w('channel.sms')}: {submitted}" in page
        assert f"{w('channel.email')}: {submitted}" in page
        browser.shot(step(4, "stage-changed"))

        # Until the customer chooses, texts go in the dealership's default, English.
        assert stack["twilio"].sends(phone)[-1].body.endswith(sms_opt_out("en"))
        # Texts only, and in Spanish from now on: both in one save.
        browser.choose(w("pref.sms"))
        browser.choose(w("msg_lang.es"))
        browser.press(w("home.pref_save"))
        assert w("home.pref_saved") in browser.text()
        row = conn.execute("SELECT notification_pref, language FROM registrations WHERE id = %s",
                           (reg,)).fetchone()
        assert (row["notification_pref"], row["language"]) == ("sms", "es")
        browser.shot(step(5, "preference"))

        email = f"{lang}@example.com"
        emails_before = len(stack["resend"].sends(email))
        _stage(stack, reg, "dmv_processing", {"sms"})
        text = stack["twilio"].sends(phone)[-1].body
        assert text.endswith(sms_opt_out("es")), text
        went = conn.execute("SELECT language FROM registration_notifications WHERE "
                            "registration_id = %s AND new_stage = 'dmv_processing' AND "
                            "channel = 'sms'", (reg,)).fetchone()["language"]
        assert went == "es"
        browser.driver.get(stack["url"] + "/portal")
        page = browser.text()
        processing = w.stage("dmv_processing", "")
        assert w("home.step_of", n=4, total=6, stage=processing) in page
        assert f"{w('channel.sms')}: {processing}" in page
        # The e-mail the preference left out is there, as not sent by the customer's choice.
        assert f"{w('channel.email')}: {processing} {w('status.skipped_preference')}" in page
        assert len(stack["resend"].sends(email)) == emails_before
        browser.shot(step(6, "next-stage"))
        size = browser.driver.execute_script(
            "return performance.getEntriesByType('navigation')[0].decodedBodySize")
        (SHOTS / f"{lang}-page-bytes.txt").write_text(f"{size}\n")
        assert size < 15_000  # six messages, one registration: light on a weak connection

        browser.press(w("home.sign_out"))
        assert w("signin.intro") in browser.text()
        browser.driver.get(stack["url"] + "/portal")
        assert "Toyota" not in browser.text()
        browser.shot(step(7, "signed-out"))
    finally:
        browser.quit()
    bad = {name: v for name, v in browser.violations.items() if v}
    assert not bad, bad
