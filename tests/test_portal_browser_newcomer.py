"""The customer page's first-hour surprises in a real browser at a phone's width
(390 px): the phone field, the stages as a named list, "Last change", the messages list, the
dealership's number when it needs attention, and the Spanish page. Screenshots go to
test-artifacts/portal/ (newcomer-*), axe-core checks each page."""

from __future__ import annotations

import pytest

from tasks.portal.i18n import Words
from tests.pg import new_registration
from tests.relay_helpers import new_delivery
from tests.test_portal_browser import Browser, _console_code, stack  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e

PHONE = "+15551110003"
GREY = "rgb(140, 149, 159)"  # .steps li's border: a stage not reached yet


def _field(browser: Browser) -> str:
    return browser.driver.find_element("id", "phone").get_attribute("value")


def _steps(browser: Browser) -> list[dict]:
    """Each stage's name box and its bar's colour, as laid out."""
    return browser.driver.execute_script("""
        return [...document.querySelectorAll('ol.steps li')].map(li => {
            const name = li.querySelector('.name').getBoundingClientRect();
            const box = li.getBoundingClientRect();
            const s = getComputedStyle(li);
            return {text: li.querySelector('.name').innerText, x: box.left, y: name.top,
                    w: name.width, h: name.height,
                    bar: s.borderLeftWidth !== '0px' ? s.borderLeftColor : s.borderTopColor};
        });""")


def test_first_hour_on_a_phone(stack):  # noqa: F811 (the fixture imported above)
    conn = stack["conn"]
    w = Words("en")
    conn.execute("UPDATE notification_config SET dealership_phone = '+15550100000'")
    reg = new_registration(conn, customer_phone=PHONE, vehicle_make="Honda",
                           vehicle_model="Civic", vehicle_year=2023)
    conn.execute("UPDATE registrations SET current_stage = 'submitted_to_dmv' WHERE id = %s",
                 (reg,))
    conn.execute("UPDATE registrations SET stage_changed_at = '2025-03-04 15:00+00' "
                 "WHERE id = %s", (reg,))
    new_delivery(conn, channel="sms", provider_message_id=None, status="skipped",
                 registration_id=reg, new_stage="documents_collected", recipient=PHONE,
                 skip_reason="silenced")
    new_delivery(conn, channel="email", provider_message_id=None, status="skipped",
                 registration_id=reg, new_stage="submitted_to_dmv", recipient=None,
                 skip_reason="no_contact")
    new_delivery(conn, channel="sms", provider_message_id="SMnew1", status="delivered",
                 registration_id=reg, new_stage="submitted_to_dmv", recipient=PHONE)
    browser = Browser(stack["tmp"] / "chrome-newcomer", "en")
    try:
        browser.driver.get(stack["url"] + "/portal")
        # #8: letters are refused for what they are, and what was typed stays.
        for typed in ("+1 555 010 0005x", "555-CALL-NOW"):
            browser.fill("phone", typed)
            browser.press(w("signin.send"))
            assert w("signin.phone_letters") in browser.text()
            assert "country code" not in browser.text().split(w("signin.phone_label"))[0]
            assert _field(browser) == typed
        browser.shot("newcomer-1-letters")
        browser.fill("phone", "555 111 000")
        browser.press(w("signin.send"))
        assert w("signin.phone_us_length", n=9) in browser.text()
        assert _field(browser) == "555 111 000"
        # The same number without its country code is accepted.
        browser.fill("phone", "(555) 111-0003")
        browser.press(w("signin.send"))
        masked = "+*******0003"
        assert w("signin.code_sent", phone=masked) in browser.text()
        browser.fill("code", _console_code(stack["relay_log"], masked, 0))
        browser.press(w("signin.sign_in"))

        # #5: at 390 px the stages are a list, each with its name.
        steps = _steps(browser)
        names = [w.stage(s, "") for s in ("sale_complete", "documents_collected",
                                          "submitted_to_dmv", "dmv_processing", "sticker_ready",
                                          "sticker_delivered")]
        assert [s["text"] for s in steps] == names
        assert all(s["w"] > 60 and s["h"] > 10 for s in steps), steps
        assert len({round(s["x"]) for s in steps}) == 1, steps  # one column
        assert [s["y"] for s in steps] == sorted(s["y"] for s in steps)
        assert len({round(s["y"]) for s in steps}) == 6, steps  # one row each
        # #2 and #3: the stage's time; each message with its why, or left out.
        page = browser.text()
        assert w("home.updated", when="Mar 4, 2025, 9:00 AM CST") in page
        assert w("home.messages_heading") in page
        assert w("status.skipped_no_contact_email") in page
        assert f"{w('channel.sms')}: {w.stage('documents_collected', '')}" not in page
        browser.shot("newcomer-2-stages-list")

        browser.choose(w("pref.sms"))
        browser.press(w("home.pref_save"))
        assert w("home.pref_saved") in browser.text()
        assert w("home.updated", when="Mar 4, 2025, 9:00 AM CST") in browser.text()

        # #4: needs attention: the number as a link, the bar in the attention colour.
        conn.execute("UPDATE registrations SET current_stage = 'needs_attention' WHERE id = %s",
                     (reg,))
        browser.driver.get(stack["url"] + "/portal")
        link = browser.driver.find_element("css selector", "p.attention-note a")
        assert link.get_attribute("href") == "tel:+15550100000"
        assert link.text == "+1 555-010-0000"
        assert "Please call them at +1 555-010-0000." in browser.text()
        bars = {s["bar"] for s in _steps(browser)}
        assert GREY not in bars and len(bars) == 1, bars
        browser.shot("newcomer-3-attention")

        # The Spanish page (this stack sets DEALERSHIP_NAME; the default brand's Spanish
        # is in test_portal_newcomer.py).
        browser.driver.get(stack["url"] + "/portal?lang=es")
        es = Words("es")
        assert es("home.messages_heading") in browser.text()
        assert "Llámelos al +1 555-010-0000, por favor." in browser.text()
        browser.shot("newcomer-4-attention-es")
    finally:
        browser.quit()
    bad = {name: v for name, v in browser.violations.items() if v}
    assert not bad, bad
