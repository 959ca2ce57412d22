"""Phone numbers on the page: what a customer types, and the dealership's number to call.

One rule for a North American number whether or not the country code is
typed: ten digits after an optional 1 (`(555) 010-0002`, `1 555 010 0002`
and `+1 555 010 0002` are the same number). Any other country needs its `+`
and code. Nothing typed is dropped silently: a letter or a stray sign is a
problem said in words, so `+1 555 010 0005x` is refused, not read as
`+15550100005`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: What people put between digits: spaces, dashes, dots, brackets.
_SEPARATORS = frozenset(" -.()\u00a0")
#: E.164: a country code not starting with 0, at most 15 digits in all.
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass(frozen=True)
class PhoneProblem:
    """Why a typed number was refused: a key under [signin] and its values."""

    key: str
    values: dict[str, object]


def read_phone(raw: str | None) -> str | PhoneProblem:
    """The E.164 number a person typed, or what is wrong with it."""
    text = (raw or "").strip()
    if not text:
        return PhoneProblem("phone_empty", {})
    if any(c.isalpha() for c in text):
        return PhoneProblem("phone_letters", {})
    body = text[1:] if text.startswith("+") else text
    if any(not (c.isdigit() or c in _SEPARATORS) for c in body):
        return PhoneProblem("phone_characters", {})
    digits = "".join(c for c in body if c.isdigit())
    if text.startswith("+") and not digits.startswith("1"):
        phone = "+" + digits
        return phone if _E164.match(phone) else PhoneProblem("phone_country_length", {})
    # North America, with or without its country code 1: no area code starts
    # with 1, so a leading 1 is always the country code.
    national = digits[1:] if digits.startswith("1") else digits
    if len(national) != 10:
        return PhoneProblem("phone_us_length", {"n": len(national)})
    return "+1" + national


def normalize_phone(raw: str | None) -> str | None:
    """E.164, or None when `raw` is not a number read_phone accepts."""
    found = read_phone(raw)
    return found if isinstance(found, str) else None


def tel_href(phone: str) -> str:
    """A `tel:` link's target: the plus and the digits only."""
    digits = "".join(c for c in phone if c.isdigit())
    return "tel:" + ("+" if phone.strip().startswith("+") else "") + digits


def display_phone(phone: str) -> str:
    """The dealership's number as people read it: +1 555-010-0000 for North America."""
    digits = "".join(c for c in phone if c.isdigit())
    if phone.strip().startswith("+1") and len(digits) == 11:
        return f"+1 {digits[1:4]}-{digits[4:7]}-{digits[7:]}"
    return phone.strip()
