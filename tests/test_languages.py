"""Messages in the customer's language: the catalogs, the SMS budget in Spanish, the setting."""

from __future__ import annotations

import json

import jinja2
import pytest

from tasks.messages.catalog import LANGUAGES, catalog
from tasks.messages.rendering import (
    MessageContext,
    _text_env,
    render_email,
    render_sms,
    sms_opt_out,
)
from tasks.messages.segments import encoding, is_gsm7, segment_count
from tests.cli_runner import cli
from tests.flow import by_channel, change_stage, deliveries, make_due, run_tick
from tests.pg import connect, new_registration

STAGES = ["sale_complete", "documents_collected", "submitted_to_dmv", "dmv_processing",
          "sticker_ready", "sticker_delivered", "needs_attention"]
# What each language's text says, so a test can tell which one it got.
OPT_OUT = {"en": "Reply STOP to opt out.", "es": "Responda STOP para cancelar."}


def _ctx(stage: str, language: str, **over) -> MessageContext:
    values = dict(dealership="Lone Star Auto", customer_name="Ana María López", stage=stage,
                  stage_label="Paso", vehicle_year=2019, make="Honda", model="Civic",
                  portal_url="https://portal.example.com/r/abc", language=language)
    values.update(over)
    return MessageContext(**values)


# ── The catalogs ─────────────────────────────────────────────────────────────


def test_every_language_has_every_text():
    keys = {lang: catalog(lang).text_keys() for lang in LANGUAGES}
    assert keys["en"] == keys["es"]
    assert {f"stages.{s}.headline" for s in [*STAGES, "default"]} <= keys["en"]
    assert sms_opt_out("en") == OPT_OUT["en"] and sms_opt_out("es") == OPT_OUT["es"]


def test_the_texts_are_held_to_strict_undefined():
    # A catalog entry naming a value the renderer does not give must fail
    # loudly, not send a blank.
    with pytest.raises(jinja2.UndefinedError):
        _text_env().from_string("Hola {{ nombre }}").render({})


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("stage", [*STAGES, "title_lost"])
@pytest.mark.parametrize("variant", ["plain", "held_fallback_no_name_no_link"])
def test_every_template_renders_in_both_languages(stage, language, variant):
    over = {}
    if variant != "plain":
        over = dict(was_held=True, is_fallback=True, customer_name=None, portal_url=None,
                    vehicle_year=None, make=None, model=None)
    ctx = _ctx(stage, language, **over)
    sms, email = render_sms(ctx), render_email(ctx)
    words = catalog(language)
    assert sms.template == f"sms:{language}/stages/{words.stage_key(stage)}"
    assert email.template == f"email:{language}/stages/{words.stage_key(stage)}"
    assert sms.body.endswith(" " + OPT_OUT[language]) and segment_count(sms.body) <= 2
    assert f'<html lang="{language}">' in email.html
    greeting = ("Hi Ana," if language == "en" else "Hola, Ana:") if variant == "plain" else (
        "Hi there," if language == "en" else "Hola:")
    assert email.text.startswith(greeting + "\n") and f"<p>{greeting}</p>" in email.html
    step = "Current step:" if language == "en" else "Paso actual:"
    assert f"{step} Paso" in email.text
    assert email.subject.startswith("Lone Star Auto: ") and "\n" not in email.subject
    held, fallback = words.text("email.held"), words.text("email.fallback")
    if variant == "plain":
        assert held not in email.text and fallback not in email.text
        assert "portal.example.com" in email.html and "2019 Honda Civic" in sms.body
    else:
        assert held in email.text and fallback in email.text
        assert held in email.html and fallback in email.html
        assert words.text("sms.fallback") in sms.body
        assert f"su {words.text('words.vehicle')}" in sms.body or language == "en"
    other = "es" if language == "en" else "en"
    assert OPT_OUT[other] not in sms.body


def test_spanish_text_parts_stay_in_gsm7():
    es = catalog("es")
    sms_keys = [k for k in es.text_keys()
                if k.startswith("sms.") or k.endswith(".headline") or k.startswith("words.")]
    assert len(sms_keys) >= 11
    for key in sms_keys:
        assert is_gsm7(es.text(key)), (key, es.text(key))


def test_spanish_stage_labels_are_gsm7(database_url):
    with connect(database_url) as conn:
        rows = conn.execute("SELECT stage, label_es FROM registration_stages").fetchall()
    assert {r["stage"] for r in rows} == set(STAGES)
    for r in rows:
        assert r["label_es"] and is_gsm7(r["label_es"]), r


@pytest.mark.parametrize("stage", [*STAGES, "title_lost"])
def test_a_long_spanish_text_keeps_its_opt_out_line(stage):
    ctx = _ctx(stage, "es", stage_label="Esperando la firma del secretario del condado " * 6,
               dealership="Autos Usados de la Gran Ciudad " * 8, model="Super Duty F-350 " * 8,
               portal_url="https://portal.example.com/r/" + "x" * 300)
    body = render_sms(ctx).body
    assert body.endswith(" Responda STOP para cancelar.") and segment_count(body) <= 2
    assert body.count("STOP") == 1
    ucs2 = _ctx(stage, "es", stage_label="Título perdido en el correo 🚗 " * 8)
    body = render_sms(ucs2).body
    assert body.endswith(" Responda STOP para cancelar.") and segment_count(body) <= 2


# ── The segment table ────────────────────────────────────────────────────────

LONG_NAME = "María Guadalupe Fernández-Villanueva de la Torre"
LONG_VEHICLE = dict(vehicle_year=2021, make="Chevrolet", model="Silverado 2500HD High Country")
PORTAL = "https://lonestarauto.example/portal"


def test_segment_table_spanish_costs_no_more_than_english(database_url):
    """For every stage, in each language: the encoding and segments of the text.

    With a long customer name and a long vehicle, the labels as migrated, and
    a portal link. Spanish must stay GSM-7 and cost no more segments than English.
    """
    with connect(database_url) as conn:
        labels = {r["stage"]: r for r in conn.execute(
            "SELECT stage, label, label_es FROM registration_stages")}
    lines = [f"{'stage':<22}{'lang':<6}{'encoding':<10}{'segments':>9}{'units':>7}  text",
             "-" * 110]
    cost: dict[tuple[str, str], int] = {}
    for stage in STAGES:
        for language in LANGUAGES:
            label = labels[stage]["label_es" if language == "es" else "label"]
            ctx = MessageContext(dealership="Lone Star Auto", customer_name=LONG_NAME,
                                 stage=stage, stage_label=label, portal_url=PORTAL,
                                 language=language, **LONG_VEHICLE)
            body = render_sms(ctx).body
            segments = segment_count(body)
            units = sum(2 if c in "^{}\\[~]|€" else 1 for c in body) if is_gsm7(body) \
                else len(body.encode("utf-16-le")) // 2
            cost[stage, language] = segments
            lines.append(f"{stage:<22}{language:<6}{encoding(body):<10}{segments:>9}"
                         f"{units:>7}  {body}")
            assert body.endswith(" " + OPT_OUT[language])
            assert "Silverado 2500HD High Country" in body  # nothing had to give way
            if language == "es":
                assert encoding(body) == "GSM-7", body
    print("\n" + "\n".join(lines))
    for stage in STAGES:
        assert cost[stage, "es"] <= cost[stage, "en"], stage
        # And with an everyday vehicle, both fit in one.
        for language in LANGUAGES:
            label = labels[stage]["label_es" if language == "es" else "label"]
            body = render_sms(MessageContext(
                dealership="Lone Star Auto", customer_name=LONG_NAME, stage=stage,
                stage_label=label, portal_url=PORTAL, language=language, vehicle_year=2019,
                make="Honda", model="Civic")).body
            assert segment_count(body) == 1, body


# ── The setting, end to end in-process ───────────────────────────────────────


def test_language_values_are_checked(conn):
    import psycopg

    reg = new_registration(conn)
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE registrations SET language = 'fr' WHERE id = %s", (reg,))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE notification_config SET default_language = 'fr'")
    assert conn.execute("SELECT default_language FROM notification_config"
                        ).fetchone()["default_language"] == "en"


@pytest.mark.usefixtures("pipeline")
def test_null_language_follows_the_configured_default(conn, twilio_wire, resend_wire, capsys,
                                                      clean_db):
    from tests.conftest import reset_process_state

    conn.execute("UPDATE notification_config SET default_language = 'es'")
    default = new_registration(conn, customer_phone="+15552220001",
                               customer_email="d@example.com")
    english = new_registration(conn, customer_phone="+15552220002",
                               customer_email="e@example.com", language="en")
    for reg in (default, english):
        change_stage(conn, reg, "sticker_ready")
    make_due(conn)
    run_tick()

    [to_default] = twilio_wire.sends("+15552220001")
    [to_english] = twilio_wire.sends("+15552220002")
    assert to_default.body.endswith(OPT_OUT["es"])
    assert "placas y etiqueta listas para su 2019 Honda Civic" in to_default.body
    assert to_english.body.endswith(OPT_OUT["en"])
    [mail] = resend_wire.sends("d@example.com")
    assert "Placas y etiqueta listas" in mail.html  # the Spanish stage label
    rows = by_channel(deliveries(conn, default))
    assert rows["sms"]["language"] == "es" and rows["email"]["language"] == "es"
    assert by_channel(deliveries(conn, english))["sms"]["language"] == "en"

    try:
        code, out, err = cli(capsys, "status", default, "--database-url", clean_db)
        assert code == 0, err
        assert "es (the default)" in out and "lang" in out
        code, out, err = cli(capsys, "status", default, "--database-url", clean_db, "--json")
        assert code == 0, err
        doc = json.loads(out)
        assert doc["registration"]["effective_language"] == "es"
        assert doc["registration"]["language"] is None
        assert {d["language"] for d in doc["queue"][0]["deliveries"]} == {"es"}
    finally:
        reset_process_state()
