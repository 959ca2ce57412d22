"""Keeping personal data out of what people read: logs, `status`, `retry-failed`.

One phone format everywhere: the '+' and the last four digits
('+15551230001' -> '+*******0001'). E-mail addresses the same way: enough
to recognise, not to write to ('dana.driver@example.com' ->
'd**********@example.com'); the full address is in the database for staff
who need it.
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


def mask_email(address: str | None) -> str | None:
    """Keep the first character and the domain: 'dana@example.com' -> 'd***@example.com'."""
    if not address:
        return address
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return "*" * len(address)
    return local[0] + "*" * (len(local) - 1) + "@" + domain


def mask_text(text: str | None) -> str | None:
    """Mask every phone number found in free text."""
    if not text:
        return text
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)) or "", text)


def mask_recipient(channel: str, recipient: str | None) -> str | None:
    """Phone numbers and e-mail addresses, masked alike."""
    return mask_phone(recipient) if channel == "sms" else mask_email(recipient)


def short_id(value: str | None, keep: int = 64) -> str:
    """A provider id trimmed for logs (ids are not secret, but untrusted input is bounded)."""
    if not value:
        return "<none>"
    cleaned = "".join(c for c in value if c.isalnum() or c in "-_.")
    return cleaned[:keep] + ("..." if len(cleaned) > keep else "")
