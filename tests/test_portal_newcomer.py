"""The customer page's first-hour surprises, through its HTTP door: "Last change"
is the stage's, the messages list explains each entry, "call them" gives a number, the phone
field says what is wrong and keeps what was typed, and the Spanish page's default brand."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.portal import data, views
from tasks.portal.phone import PhoneProblem, read_phone
from tests.pg import new_registration
from tests.portal_helpers import CODE_LINE, post
from tests.relay_helpers import new_delivery

pytest_plugins = ["tests.portal_helpers"]

ANA = "+15551110001"


@pytest.fixture(autouse=True)
def quick_and_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "SEND_FLOOR_S", 0.0)
    # The dealership's row is read afresh: these tests change it.
    monkeypatch.setattr(data, "_defaults_cache", {})


@pytest.fixture()
def ana(conn) -> str:
    return new_registration(conn, customer_phone=ANA, vehicle_make="Toyota",
                            vehicle_model="Corolla", vehicle_year=2022)


def signed_in(portal_client, capsys, **settings: Any):
    client = portal_client(**settings)
    assert post(client, "/portal/code", {"phone": ANA}).status_code == 200
    code = CODE_LINE.findall(capsys.readouterr().out)[-1][1]
    assert post(client, "/portal/sign-in", {"phone": ANA, "code": code}).status_code == 303
    return client


def flat(html: str) -> str:
    return " ".join(html.split())


# ── #2 "Last change" is the stage's ──────────────────────────────────────────


def test_stage_changed_at_moves_with_the_stage_only(conn, ana):
    def stamp() -> Any:
        return conn.execute("SELECT stage_changed_at FROM registrations WHERE id = %s",
                            (ana,)).fetchone()["stage_changed_at"]

    conn.execute("UPDATE registrations SET stage_changed_at = '2025-03-04 15:00+00' "
                 "WHERE id = %s", (ana,))
    before = stamp()
    conn.execute("UPDATE registrations SET notification_pref = 'sms', language = 'es' "
                 "WHERE id = %s", (ana,))
    assert stamp() == before
    conn.execute("UPDATE registrations SET current_stage = 'documents_collected' WHERE id = %s",
                 (ana,))
    assert stamp() > before
    # Staff move the stage; only the trigger writes when (no grant to forge it).
    assert not conn.execute(
        "SELECT has_column_privilege('authenticated', 'public.registrations', "
        "'stage_changed_at', 'UPDATE') AS ok").fetchone()["ok"]


def test_last_change_stays_when_the_customer_saves_a_preference(portal_client, ana, capsys,
                                                                   conn):
    conn.execute("UPDATE registrations SET current_stage = 'documents_collected' WHERE id = %s",
                 (ana,))
    conn.execute("UPDATE registrations SET stage_changed_at = '2025-03-04 15:00+00' "
                 "WHERE id = %s", (ana,))
    client = signed_in(portal_client, capsys)
    page = client.get("/portal").text
    saved = post(client, "/portal/preference", {"registration_id": ana, "pref": "sms"}, page)
    assert saved.status_code == 303
    text = flat(client.get("/portal").text)
    # America/Chicago, the dealership's default zone.
    assert "Last change: Mar 4, 2025, 9:00 AM CST" in text, text


# ── #3 Each message says why, in the customer's words, or is left out ────────


def test_messages_list_explains_each_entry_or_leaves_it_out(portal_client, ana, capsys, conn):
    for stage, reason in (("documents_collected", "silenced"), ("submitted_to_dmv",
                          "no_net_change"), ("dmv_processing", "superseded"),
                          ("sticker_ready", None)):
        new_delivery(conn, channel="sms", provider_message_id=None, status="skipped",
                     registration_id=ana, new_stage=stage, recipient=ANA, skip_reason=reason)
    new_delivery(conn, channel="email", provider_message_id=None, status="skipped",
                 registration_id=ana, new_stage="sale_complete", skip_reason="no_contact",
                 recipient=None)
    new_delivery(conn, channel="sms", provider_message_id=None, status="skipped",
                 registration_id=ana, new_stage="sale_complete", skip_reason="opted_out",
                 recipient=ANA)
    new_delivery(conn, channel="sms", provider_message_id="SMok", status="delivered",
                 registration_id=ana, new_stage="sticker_delivered", recipient=ANA)
    client = signed_in(portal_client, capsys)
    text = flat(client.get("/portal").text)
    assert "<h3>Text and e-mail updates</h3>" in text
    assert "Messages we sent" not in text
    items = re.findall(r'<ul class="msgs">(.*?)</ul>', text)[0].split("<li>")[1:]
    assert len(items) == 3, items
    assert "Not sent: we have no e-mail address for you" in text
    assert "Not sent: this number asked for no texts (reply START to get them again)" in text
    assert "Delivered" in text
    for hidden in ("Documents collected", "Submitted to the DMV", "DMV processing",
                   "Plates and sticker ready"):
        assert f"Text: {hidden}</span>" not in text, hidden
    assert ">Not sent<" not in text  # never a bare "Not sent" without its why
    es = flat(client.get("/portal?lang=es").text)
    assert "<h3>Avisos por texto y correo</h3>" in es
    assert "No enviado: no tenemos su correo electrónico" in es
    assert ">No enviado<" not in es


# ── #4 "Please call them" gives the number ───────────────────────────────────


def test_attention_gives_the_dealerships_number_as_a_link(portal_client, ana, capsys, conn):
    conn.execute("UPDATE notification_config SET dealership_phone = '+15550100000'")
    conn.execute("UPDATE registrations SET current_stage = 'needs_attention' WHERE id = %s",
                 (ana,))
    client = signed_in(portal_client, capsys)
    html = flat(client.get("/portal").text)
    assert ('Please call them at <a href="tel:+15550100000">+1 555-010-0000</a>.' in html), html
    assert '<ol class="steps attention"' in html
    es = flat(client.get("/portal?lang=es").text)
    assert 'Llámelos al <a href="tel:+15550100000">+1 555-010-0000</a>, por favor.' in es


def test_attention_without_a_number_says_so(portal_client, ana, capsys, conn):
    conn.execute("UPDATE notification_config SET dealership_phone = NULL")
    conn.execute("UPDATE registrations SET current_stage = 'needs_attention' WHERE id = %s",
                 (ana,))
    client = signed_in(portal_client, capsys)
    html = flat(client.get("/portal").text)
    assert "Please call the dealership: their number is not on this page yet." in html
    assert "tel:" not in html


def test_a_dealership_phone_with_markup_is_escaped(portal_client, ana, capsys, conn):
    conn.execute("UPDATE notification_config SET dealership_phone = '555 <b>0100</b>'")
    conn.execute("UPDATE registrations SET current_stage = 'needs_attention' WHERE id = %s",
                 (ana,))
    client = signed_in(portal_client, capsys)
    html = client.get("/portal").text
    assert "<b>0100</b>" not in html and "&lt;b&gt;0100&lt;/b&gt;" in html


# ── #8 The phone field ───────────────────────────────────────────────────────


def answer_to(client, typed: str) -> tuple[int, str, str]:
    """The status, the error line and the phone field's value after posting `typed`."""
    answer = post(client, "/portal/code", {"phone": typed})
    error = re.search(r'<p class="error" id="page-error" role="alert">(.*?)</p>', answer.text)
    field = re.search(r'<input id="phone"[^>]*value="([^"]*)"', answer.text)
    return (answer.status_code, error.group(1) if error else "",
            field.group(1) if field else "")


@pytest.mark.parametrize("typed", ["+1 555 010 0005x", "555-CALL-NOW", "555 010 OOO2"])
def test_letters_are_refused_with_their_own_reason_and_kept(portal_client, typed):
    client = portal_client()
    status, error, value = answer_to(client, typed)
    assert status == 422
    assert "has letters" in error and "country code" not in error, error
    assert value == typed.replace("&", "&amp;")


@pytest.mark.parametrize("typed", ["(555) 010-0002", "555.010.0002", "1 555 010 0002",
                                   "+1 555 010 0002", "+1 (555) 010-0002"])
def test_a_north_american_number_is_one_rule_with_or_without_its_code(portal_client, capsys,
                                                                        typed):
    client = portal_client()
    status, error, _ = answer_to(client, typed)
    assert (status, error) == (200, "")
    assert "sign-in code for +*******0002" in capsys.readouterr().out


@pytest.mark.parametrize("typed", ["555 010 000", "+1 555 010 000", "1 555 010 00021"])
def test_a_short_or_long_north_american_number_says_how_many_digits(portal_client, typed):
    status, error, value = answer_to(portal_client(), typed)
    assert status == 422 and "has 10 digits" in error and value == typed, error


def test_the_spanish_page_says_it_in_spanish_and_keeps_the_number(portal_client):
    client = portal_client()
    client.get("/portal?lang=es")
    status, error, value = answer_to(client, "555-CALL-NOW")
    assert status == 422 and "tiene letras" in error and value == "555-CALL-NOW"


def test_other_signs_are_refused_not_dropped(portal_client):
    status, error, value = answer_to(portal_client(), "555#010#0002")
    assert status == 422 and "in digits" in error and value == "555#010#0002"


@given(st.from_regex(r"[2-9]\d{2}[2-9]\d{6}", fullmatch=True),
       st.sampled_from(["{a}{b}{c}", "({a}) {b}-{c}", "{a}.{b}.{c}", "{a} {b} {c}"]),
       st.sampled_from(["", "1 ", "+1 ", "+1", "1-"]))
def test_same_number_whatever_the_formatting(national, layout, prefix):
    typed = prefix + layout.format(a=national[:3], b=national[3:6], c=national[6:])
    assert read_phone(typed) == "+1" + national


@given(st.text(min_size=1, max_size=24))
def test_a_letter_anywhere_is_never_read_as_a_number(typed):
    if any(c.isalpha() for c in typed):
        assert isinstance(read_phone(typed), PhoneProblem)


# ── #9 The Spanish page's default brand ──────────────────────────────────────


def test_spanish_page_has_a_spanish_default_brand(portal_client):
    client = portal_client()
    assert '<p class="brand">Your dealership</p>' in client.get("/portal?lang=en").text
    es = client.get("/portal?lang=es").text
    assert '<p class="brand">Su concesionario</p>' in es and "Your dealership" not in es


def test_a_named_dealership_keeps_its_name_in_both(portal_client):
    client = portal_client(dealership_name="Lone Star Motors")
    assert '<p class="brand">Lone Star Motors</p>' in client.get("/portal?lang=es").text
    assert '<p class="brand">Lone Star Motors</p>' in client.get("/portal?lang=en").text
