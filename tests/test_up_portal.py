"""`regnotify up` serves the customer page: its address is printed, every message links to
it, and a customer signs in with the code the relay prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tasks.local.embedded_postgres import free_port
from tests.pg import connect
from tests.portal_helpers import csrf
from tests.up_process import STACK_ENV, Up, assert_stopped_cleanly, deliver_one_change, up_env

pytestmark = pytest.mark.e2e


def test_up_prints_the_portal_and_a_customer_signs_in_with_the_console_code(state_root: Path):
    ports = {name: free_port() for name in ("postgres", "redis", "relay", "flower")}
    up = Up(state_root, ports)
    portal = f"http://127.0.0.1:{ports['relay']}/portal"
    try:
        up.wait_for("regnotify is up")
        assert portal in up.wait_for("  portal  ")
        assert up_env(state_root)["PORTAL_URL"] == portal
        with connect(up_env(state_root)["DATABASE_URL"]) as conn:
            conn.execute("UPDATE notification_config SET debounce_window = interval '1 second'")

            def tick() -> None:
                time.sleep(1.2)
                subprocess.run([sys.executable, "-m", "tasks.cli", "tick"], cwd=state_root,
                               capture_output=True, timeout=30, check=True,
                               env={k: v for k, v in os.environ.items() if k not in STACK_ENV})

            deliver_one_change(conn, "Portal Up", "+15557770002", "portal@example.com",
                               before_waiting=tick)
        # The console text carries the page's link.
        up.wait_for(portal)

        with httpx.Client(base_url=portal.removesuffix("/portal"), timeout=10) as browser:
            page = browser.get("/portal").text
            sent = browser.post("/portal/code", data={"csrf": csrf(page),
                                                      "phone": "+15557770002"})
            assert sent.status_code == 200
            line = up.wait_for("sign-in code for +*******0002: ")
            code = re.search(r": (\d{6})$", line).group(1)
            signed = browser.post("/portal/sign-in", data={"csrf": csrf(sent.text),
                                                           "phone": "+15557770002",
                                                           "code": code})
            assert signed.status_code == 303
            home = browser.get("/portal")
            assert "Step 5 of 6: Plates and sticker ready" in home.text
    finally:
        assert_stopped_cleanly(up, ports, state_root)
