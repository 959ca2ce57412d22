"""What the status timeline says about quiet-hours holds and channel fallbacks."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from db.status import DeliveryEntry

_DID = {"sms": "texted", "email": "e-mailed"}
_FAILED = {
    ("sms", "undelivered"): "the text could not be delivered",
    ("sms", "failed"): "the text could not be delivered",
    ("email", "bounced"): "the e-mail bounced",
    ("email", "failed"): "the e-mail could not be sent",
}


def delivery_note(d: DeliveryEntry) -> str:
    """'held for quiet hours until 08:00 America/Chicago', 'e-mailed because ...', or ''."""
    notes = []
    if d.fallback_for is not None:
        why = _FAILED.get((d.fallback_for_channel or "", d.fallback_for_status or ""),
                          f"the {d.fallback_for_channel} message failed")
        code = f" ({d.fallback_for_error_code})" if d.fallback_for_error_code else ""
        notes.append(f"{_DID.get(d.channel, d.channel)} because {why}{code}")
    if d.held_until is not None and d.hold_zone:
        until = f"until {d.held_until_local} {d.hold_zone}"
        if d.hold_reason is not None:
            notes.append(f"held for quiet hours {until}")
        elif d.status != "skipped":
            notes.append(f"was held for quiet hours {until}")
    if d.replaced_by is not None:
        other = "e-mail" if d.channel == "sms" else "text"
        notes.append(f"the {other} went instead (delivery {d.replaced_by})")
    return "; ".join(notes)
