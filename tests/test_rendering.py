"""Per-stage templates: short texts, complete e-mails, escaping, fallbacks."""

from __future__ import annotations

import pytest

from tasks.messages.rendering import MessageContext, render_email, render_sms
from tasks.messages.segments import is_gsm7, segment_count
from tasks.sending.delivery_flow import backoff_seconds
from tasks.settings import Settings
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
    assert sms.template == f"sms:en/stages/{stage}"
    assert email.template == f"email:en/stages/{stage}"
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
    assert sms.template == "sms:en/stages/default"
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


# ── The opt-out line survives any label, vehicle, link or name ───────────

LONG_GSM_LABEL = ("Waiting on the county clerk to countersign the lien release; "
                  "call us if the plates have not arrived by Friday [ref A-17] ") * 4
LONG_UCS2_LABEL = "Ожидание подписи окружного клерка 🚗 на документе о снятии залога " * 4  # noqa: RUF001


def _assert_compliant(body: str) -> None:
    assert body.endswith(" Reply STOP to opt out."), body
    assert body.count("Reply STOP to opt out.") == 1
    assert segment_count(body) <= 2, (segment_count(body), body)


@pytest.mark.parametrize("label", [LONG_GSM_LABEL[:240], LONG_UCS2_LABEL[:240]],
                         ids=["gsm7", "ucs2"])
def test_a_240_character_label_never_cuts_the_opt_out_line(label):
    assert len(label) == 240
    sms = render_sms(_ctx("title_lost", stage_label=label))
    _assert_compliant(sms.body)
    # The label gave way, not the message: its start is still there, cut with "...".
    assert label[:20] in sms.body
    assert "..." in sms.body
    assert sms.body.startswith("Lone Star Auto: ")


def test_a_ucs2_label_is_budgeted_as_ucs2():
    sms = render_sms(_ctx("title_lost", stage_label=LONG_UCS2_LABEL[:240]))
    # Non-GSM characters survive, so the text is UCS-2: 134 units in two segments.
    assert not is_gsm7(sms.body)
    assert len(sms.body.encode("utf-16-le")) // 2 <= 134
    _assert_compliant(sms.body)


def test_an_emoji_is_never_split_by_the_cut():
    # A family emoji is several code points joined by zero-width joiners.
    label = "Ready for pickup " + "👨\u200d👩\u200d👧\u200d👦 " * 60
    for keep in range(len(label) - 40, len(label)):
        body = render_sms(_ctx("title_lost", stage_label=label[:keep])).body
        _assert_compliant(body)
        before_dots = body.split("...")[0] if "..." in body else body
        assert not before_dots.endswith("\u200d")


@pytest.mark.parametrize("stage", [*STAGES, "title_lost"])
def test_every_variable_part_long_at_once(stage):
    ctx = _ctx(stage, stage_label=LONG_GSM_LABEL, dealership="Springfield Pre-Owned " * 12,
               model="Super Duty F-350 " * 8,
               portal_url="https://portal.example.com/r/" + "x" * 300)
    _assert_compliant(render_sms(ctx).body)
    ctx = _ctx(stage, stage_label=LONG_UCS2_LABEL, dealership="Autos Ñandú Ōsaka 🚗 " * 12,
               model="Model Ω " * 20)
    _assert_compliant(render_sms(ctx).body)


def test_random_lengths_always_fit_and_keep_the_line():
    import random

    rng = random.Random(13)
    alphabet = "abcdefghij KLMNOP,.-[]€é" + "ЖΩ🚗ō"
    for _ in range(300):
        def word(n: int) -> str:
            return "".join(rng.choice(alphabet) for _ in range(n))

        ctx = _ctx(rng.choice([*STAGES, "title_lost"]),
                   stage_label=word(rng.randint(0, 300)) or None,
                   dealership=word(rng.randint(1, 200)),
                   model=word(rng.randint(0, 120)) or None,
                   portal_url=rng.choice([None, "https://p.example/" + word(rng.randint(0, 80))]))
        _assert_compliant(render_sms(ctx).body)


def test_a_short_text_is_not_trimmed():
    sms = render_sms(_ctx("title_lost", stage_label="Title lost in the mail."))
    assert sms.body == ("Lone Star Auto: your 2019 Honda Civic's registration is now: "
                        "Title lost in the mail. https://portal.example.com/r/abc "
                        "Reply STOP to opt out.")
