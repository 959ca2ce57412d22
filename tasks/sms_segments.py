"""How many SMS segments a body costs (GSM-7 or UCS-2), so texts stay within two."""

from __future__ import annotations

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# These take two septets (an escape and the character).
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


_GSM_ALL = _GSM_BASIC | _GSM_EXTENDED


def is_gsm7(body: str) -> bool:
    """True when every character has a GSM 03.38 encoding."""
    # Set operations run in C: a loop over the characters cost a tenth of a send.
    return _GSM_ALL.issuperset(body)


def segment_count(body: str) -> int:
    """Segments a carrier bills for `body`: 160/153 septets in GSM-7, 70/67 UTF-16 units else."""
    if is_gsm7(body):
        units = len(body) + sum(body.count(ch) for ch in _GSM_EXTENDED)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    if units <= single:
        return 1
    return -(-units // multi)
