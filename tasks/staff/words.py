"""Statuses, skip reasons and providers' errors in words a person at the front desk reads."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

STATUS = {
    "queued": "Waiting to be sent",
    "sending": "Being sent",
    "sent": "Sent (the provider accepted it)",
    "delivered": "Delivered",
    "undelivered": "Not delivered",
    "failed": "Failed",
    "bounced": "E-mail bounced",
    "complained": "Marked as spam by the customer",
    "skipped": "Not sent",
}
SKIP = {
    "preference": "the customer chose not to get messages on this channel",
    "silenced": "staff silenced this stage change",
    "no_contact": "no phone number or e-mail address on file",
    "opted_out": "the customer texted STOP (they can text START to get texts again)",
    "no_net_change": "the stage changed and changed back before the message left",
    "superseded": "a newer message replaced it while it waited for quiet hours to end",
}
#: Providers' codes staff meet most (Twilio's 2xxxx/3xxxx, our own).
ERRORS = {
    "outcome_unknown": "the provider did not answer in time: it may have sent it anyway",
    "21211": "the phone number is not valid",
    "21408": "texts to this country are not enabled",
    "21610": "the customer texted STOP to this number",
    "21614": "the number cannot receive texts (a landline?)",
    "30003": "the phone was off or out of reach",
    "30004": "the customer's carrier or phone blocks these texts",
    "30005": "the number does not exist (any more)",
    "30006": "a landline or a carrier that cannot take texts",
    "30007": "the carrier filtered it as spam",
    "30008": "the carrier could not deliver it (unknown reason)",
    "30034": "the sending number is not registered for US texting (A2P 10DLC)",
}
ACTIONS = {
    "send_now": "sent by hand",
    "silence_next": "silenced the next stage change",
    "resend": "re-sent a failed message",
    "mark_handled": "marked handled",
}


def status_words(row: Mapping[str, Any]) -> str:
    """'Failed: the phone was off or out of reach (30003)', 'Not sent: ...', 'Delivered'."""
    status = str(row.get("status") or "")
    head = STATUS.get(status, status)
    if status == "skipped" and row.get("skip_reason"):
        reason = str(row["skip_reason"])
        return f"{head}: {SKIP.get(reason, reason)}"
    code = row.get("error_code")
    if status in ("failed", "undelivered", "bounced") and (code or row.get("error_message")):
        why = ERRORS.get(str(code)) if code else None
        why = why or str(row.get("error_message") or "no reason given")
        return f"{head}: {why}" + (f" ({code})" if code and code != "outcome_unknown" else "")
    if status == "queued" and row.get("hold_reason"):
        return f"{head}: held for quiet hours"
    return head


def when(value: datetime | str | None) -> str:
    """A time as staff read it: '2026-12-06 09:14 UTC'."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.strftime("%Y-%m-%d %H:%M %Z").strip()


def action(name: str) -> str:
    return ACTIONS.get(name, name)


#: Why "send now" queued nothing, by request_notification's reason code. The
#: registration page shows only these words (the address carries the code).
NOT_QUEUED = {
    "preference": "The customer chose no messages (their preference is 'none').",
    "no_contact": "There is no phone number or e-mail address on file for the chosen "
                  "channel.",
    "opted_out": "The customer's number opted out of texts (they can text START).",
    "other": "Nothing could be queued for this registration.",
}
