"""Per-stage templates: short texts, complete e-mails, escaping, fallbacks."""

from __future__ import annotations

import pytest

from tasks.delivery_flow import backoff_seconds
from tasks.rendering import MessageContext, render_email, render_sms
from tasks.settings import Settings
from tasks.sms_segments import segment_count
from tests.pg import connect

STAGES = ["sale_complete", "documents_collected", "submitted_to_dmv", "dmv_processing",
          "sticker_ready", "sticker_delivered", "needs_attention"]


def _ctx(stage: str, **over) -> MessageContext:
    values = dict(dealership="Lone Star Auto", customer_name="Ana María López", stage=stage,
                  stage_label=stage.replace("_", " "), vehicle_year=2019, make="Honda",
                  model="Civic", portal_url="https://portal.example.com/r/abc")
    values.update(over)
    return MessageContext(**values)


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_has_its_own_template(stage):
    sms = render_sms(_ctx(stage))
    email = render_email(_ctx(stage))
    assert sms.template == f"sms:stages/{stage}.j2"
    assert email.template == f"email:stages/{stage}.j2"
    assert sms.body.startswith("Lone Star Auto: ") and "2019 Honda Civic" in sms.body
    assert "Reply STOP" in sms.body
    assert segment_count(sms.body) == 1
    assert email.subject.startswith("Lone Star Auto: ") and "\n" not in email.subject
    assert "Hi Ana," in email.text and "Hi Ana," in email.html
    assert "https://portal.example.com/r/abc" in email.html


def test_stages_table_and_templates_agree(database_url):
    with connect(database_url) as conn:
        stages = {r["stage"] for r in conn.execute("SELECT stage FROM registration_stages")}
    assert stages == set(STAGES)


@pytest.mark.parametrize("stage", STAGES)
def test_long_names_still_fit_in_two_segments(stage):
    long = _ctx(stage, dealership="The Very Long Named Family Owned Pre-Owned Vehicle Emporium "
                "of Greater Metropolitan Springfield", model="Super Duty F-350 " * 8)
    assert segment_count(render_sms(long).body) <= 2
    unicode_name = _ctx(stage, dealership="Autos Ñandú Ōsaka 🚗 " * 4, model="Model Ω " * 10)
    assert segment_count(render_sms(unicode_name).body) <= 2


def test_html_is_escaped_but_text_is_not():
    email = render_email(_ctx("sticker_ready", model="<b>Civic</b> & Co"))
    assert "&lt;b&gt;Civic&lt;/b&gt; &amp; Co" in email.html
    assert "<b>Civic</b> & Co" in email.text
    assert "&" in render_sms(_ctx("sticker_ready", model="A & B")).body


def test_unknown_stage_uses_the_default_template():
    sms = render_sms(_ctx("title_lost", stage_label="Title lost in the mail"))
    assert sms.template == "sms:stages/default.j2"
    assert "Title lost in the mail" in sms.body


def test_segment_counting():
    assert segment_count("a" * 160) == 1
    assert segment_count("a" * 161) == 2
    assert segment_count("€" * 80) == 1  # two septets each
    assert segment_count("é" * 160) == 1  # é is in GSM-7
    assert segment_count("ō" * 70) == 1
    assert segment_count("ō" * 71) == 2


def test_backoff_grows_has_jitter_and_honours_retry_after():
    s = Settings(send_retry_backoff_base=2.0, send_retry_backoff_max=600)
    first = [backoff_seconds(1, s, None) for _ in range(50)]
    fifth = [backoff_seconds(5, s, None) for _ in range(50)]
    assert all(1.0 <= x <= 2.0 for x in first) and len(set(first)) > 1
    assert all(16.0 <= x <= 32.0 for x in fifth)
    assert all(backoff_seconds(20, s, None) <= 600 for _ in range(20))
    assert backoff_seconds(1, s, 30.0) == 30.0
