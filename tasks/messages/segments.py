"""How many SMS segments a body costs (GSM-7 or UCS-2), counted as carriers count them."""

from __future__ import annotations

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# These take two septets (an escape and the character).
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


_GSM_ALL = _GSM_BASIC | _GSM_EXTENDED


def is_gsm7(body: str) -> bool:
    """True when every character has a GSM 03.38 encoding."""
    # Set operations run in C: a loop over the characters cost a tenth of a send.
    return _GSM_ALL.issuperset(body)


def encoding(body: str) -> str:
    """`GSM-7` or `UCS-2`: one character outside GSM-7 makes the whole text UCS-2."""
    return "GSM-7" if is_gsm7(body) else "UCS-2"


def _units(ch: str, gsm: bool) -> int:
    if gsm:
        return 2 if ch in _GSM_EXTENDED else 1
    return 2 if ord(ch) > 0xFFFF else 1  # a surrogate pair in UTF-16


def segment_count(body: str) -> int:
    """Segments a carrier bills for `body`.

    One segment holds 160 septets (GSM-7) or 70 UTF-16 units (UCS-2); a longer
    text is sent in parts of 153 or 67, and carriers never split a character
    across two parts: neither an escape pair (€ [ ] { } ~ ^ | \\) nor a
    surrogate pair (an emoji). A part that cannot take the next character's
    two units closes one unit short, so a text can cost one part more than
    its length divided by 153 (or 67).
    """
    gsm = is_gsm7(body)
    single, part = (GSM7_SINGLE, GSM7_PART) if gsm else (UCS2_SINGLE, UCS2_PART)
    costs = [_units(ch, gsm) for ch in body]
    if sum(costs) <= single:
        return 1
    parts, used = 1, 0
    for cost in costs:
        if used + cost > part:
            parts, used = parts + 1, 0
        used += cost
    return parts
