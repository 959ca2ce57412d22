"""The ledger every reliability scenario ends with.

Every delivery that was due to be sent was accepted by its provider exactly
once (and the database knows the provider's id), or failed with a recorded
reason; nothing is left queued or sending; no provider accepted a message
the database does not know about, nor the same message twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.pg import connect
from tests.wire._core import AcceptedSend
from tests.wire.resend_wire import ResendWire
from tests.wire.twilio_wire import TwilioWire


@dataclass
class Ledger:
    """The counts a scenario reports, and what is wrong if anything."""

    notifications: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        """Fail the test with every problem found."""
        assert not self.problems, "\n".join(self.problems[:40])

    def row(self) -> dict[str, int]:
        """The figures for the issue note's table."""
        return {"notifications": self.notifications, "sent": self.sent, "lost": self.lost,
                "duplicated": self.duplicated, "failed_with_reason": self.failed,
                "skipped": self.skipped}


def take(database_url: str, twilio: TwilioWire, resend: ResendWire, *,
         same_text_is_duplicate: bool = True) -> Ledger:
    """Compare the audit table with what the providers accepted.

    `same_text_is_duplicate`: every delivery's text is unique in the
    scenario, so two accepted copies of one text are a duplicate send.
    """
    with connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, channel, status, provider_message_id, error_code, skip_reason "
            "FROM registration_notifications").fetchall()
    accepted = {"sms": twilio.sends(), "email": resend.sends()}
    groups = [copies for wire in (twilio, resend) if same_text_is_duplicate
              for copies in wire.duplicates().values()]
    return judge(rows, accepted, groups)


def judge(rows: Sequence[Mapping[str, Any]], accepted: Mapping[str, Sequence[AcceptedSend]],
          duplicate_groups: Sequence[Sequence[AcceptedSend]]) -> Ledger:
    """The audit rows against what each channel's provider accepted.

    `duplicate_groups`: accepted sends with the same recipient and content;
    every delivery's text is unique in a scenario, so a group is a double send.
    """
    ledger = Ledger()
    accepted_ids = {ch: Counter(s.id for s in sends) for ch, sends in accepted.items()}
    known_ids: dict[str, set[str]] = {ch: set() for ch in accepted}
    for r in rows:
        if r["status"] == "skipped":
            ledger.skipped += 1
            if not r["skip_reason"]:
                ledger.problems.append(f"delivery {r['id']} skipped without a reason")
            continue
        ledger.notifications += 1
        if r["status"] in ("queued", "sending"):
            ledger.lost += 1
            ledger.problems.append(f"delivery {r['id']} ({r['channel']}) still {r['status']}")
        elif r["status"] == "failed":
            ledger.failed += 1
            if not r["error_code"]:
                ledger.problems.append(f"delivery {r['id']} failed without a reason")
        else:
            ledger.sent += 1
            pid = r["provider_message_id"]
            known_ids[r["channel"]].add(pid)
            if accepted_ids[r["channel"]][pid] != 1:
                ledger.lost += 1
                ledger.problems.append(
                    f"delivery {r['id']} says {r['status']} as {pid}, but the provider "
                    f"accepted that id {accepted_ids[r['channel']][pid]} time(s)")
    for channel, sends in accepted.items():
        for send in sends:
            if send.id not in known_ids[channel]:
                ledger.duplicated += 1
                ledger.problems.append(
                    f"{channel} {send.id} to {send.to} accepted but no delivery records it")
    for copies in duplicate_groups:
        ledger.duplicated += len(copies) - 1
        ledger.problems.append(f"{copies[0].provider} accepted {copies[0].to} "
                               f"{len(copies)} times")
    return ledger
