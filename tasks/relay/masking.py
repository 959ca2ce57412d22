"""Keeping personal data and secrets out of log lines."""

from __future__ import annotations


def mask_phone(phone: str | None) -> str:
    """A phone number as logs may show it: only its last four digits."""
    if not phone:
        return "<none>"
    digits = [c for c in phone if c.isdigit()]
    if len(digits) <= 4:
        return "***"
    return "***" + "".join(digits[-4:])


def short_id(value: str | None, keep: int = 64) -> str:
    """A provider id trimmed for logs (ids are not secret, but untrusted input is bounded)."""
    if not value:
        return "<none>"
    cleaned = "".join(c for c in value if c.isalnum() or c in "-_.")
    return cleaned[:keep] + ("..." if len(cleaned) > keep else "")
