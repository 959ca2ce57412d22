"""Segments as carriers count them: no escape pair or surrogate pair split across two parts."""

from __future__ import annotations

import random

import pytest

from tasks.messages.rendering import MessageContext, render_sms
from tasks.messages.segments import segment_count
from tests.wire.twilio_wire import num_segments, segments

A, EURO, EMOJI, MACRON = "a", "€", "😀", "ō"


@pytest.mark.parametrize(("body", "expected"), [
    (A * 160, 1),
    (EURO * 80, 1),                       # 160 septets: one part
    (A * 159 + EURO, 2),                  # 161 septets
    (A * 306, 2),
    # 306 septets, but the escape pair would straddle the first boundary, so
    # the first part closes at 152: three parts, not two.
    (A * 152 + EURO + A * 152, 3),
    (A * 151 + EURO + A * 153, 2),        # the pair ends exactly at 153
    (A * 152 + "[" + A * 152, 3),
    (MACRON * 70, 1),
    (EMOJI * 35, 1),                      # 70 UTF-16 units
    (MACRON * 134, 2),
    # 134 units, but the surrogate pair would straddle the first boundary.
    (MACRON * 66 + EMOJI + MACRON * 66, 3),
    (MACRON * 65 + EMOJI + MACRON * 67, 2),
], ids=lambda v: v if isinstance(v, int) else f"{len(v)}ch")
def test_boundary_on_an_escape_or_surrogate_pair(body, expected):
    assert segment_count(body) == expected
    assert num_segments(body) == expected


def test_the_stand_in_parts_never_split_a_character():
    body = A * 152 + EURO + A * 152
    parts = segments(body)
    assert "".join(parts) == body
    assert [len(p) for p in parts] == [152, 152, 1]  # € + 151 = 153 septets
    assert parts[1].startswith(EURO)
    body = MACRON * 66 + EMOJI + MACRON * 66
    parts = segments(body)
    assert "".join(parts) == body and parts[1].startswith(EMOJI)
    assert all(len(p.encode("utf-16-le")) // 2 <= 67 for p in parts)


def test_our_count_and_the_stand_ins_agree_on_random_bodies():
    rng = random.Random(7)
    alphabets = ["ab €[]{}~^|\\", "abñé ¿¡" + EMOJI, "ōЖ" + EMOJI + "a"]
    for _ in range(3000):
        alphabet = rng.choice(alphabets)
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(60, 480)))
        assert segment_count(body) == num_segments(body), body


def test_a_text_heavy_with_escapes_still_fits_two_real_segments():
    # Labels full of escape characters and emoji: the trimming must count as
    # the stand-in (and the carriers) do, or a "two segment" text bills three.
    rng = random.Random(11)
    for language in ("en", "es"):
        for _ in range(200):
            alphabet = rng.choice(["x€[]{}| ", "x😀ō "])
            label = "".join(rng.choice(alphabet) for _ in range(rng.randint(100, 300)))
            ctx = MessageContext(dealership="Lone Star Auto", customer_name="Ana", stage="odd",
                                 stage_label=label, vehicle_year=2019, make="Honda",
                                 model="Civic", portal_url=None, language=language)
            body = render_sms(ctx).body
            assert num_segments(body) <= 2, body
