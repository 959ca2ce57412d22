"""Keeping personal data out of what people read: logs, `status`, `retry-failed`.

One phone format everywhere: the '+' and the last four digits
('+15551230001' -> '+*******0001'). E-mail addresses are shown: staff need
them and they are not what leaks in pasted tickets and chats.
"""

from __future__ import annotations

import re

# E.164 numbers inside free text (provider error messages quote the 'To').
_PHONE_IN_TEXT = re.compile(r"(?<!\w)\+?[1-9]\d{6,14}(?!\w)")


def mask_phone(phone: str | None) -> str | None:
    """Keep the '+' and the last four digits: '+15551230001' -> '+*******0001'."""
    if not phone:
        return phone
    digits = sum(ch.isdigit() for ch in phone)
    seen = 0
    out = []
    for ch in phone:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > digits - 4 else "*")
        else:
            out.append(ch)
    return "".join(out)


def mask_text(text: str | None) -> str | None:
    """Mask every phone number found in free text."""
    if not text:
        return text
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)) or "", text)


def mask_recipient(channel: str, recipient: str | None) -> str | None:
    """SMS recipients are phone numbers and get masked; e-mail addresses are shown."""
    return mask_phone(recipient) if channel == "sms" else recipient


def short_id(value: str | None, keep: int = 64) -> str:
    """A provider id trimmed for logs (ids are not secret, but untrusted input is bounded)."""
    if not value:
        return "<none>"
    cleaned = "".join(c for c in value if c.isalnum() or c in "-_.")
    return cleaned[:keep] + ("..." if len(cleaned) > keep else "")
