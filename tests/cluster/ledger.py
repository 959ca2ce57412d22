"""The ledger a cluster scenario ends with: the audit rows against the stand-ins' logs.

Every delivery is sent (the provider accepted its id exactly once) or failed
with a reason; nothing is still queued or sending; the providers accepted
nothing the database does not know, and no message twice (every text and
e-mail of a scenario is unique, so two accepted copies are a double send).
"""

from __future__ import annotations

from collections import Counter

from tests.cluster.harness import Cluster
from tests.reliability.ledger import Ledger


def take(cluster: Cluster) -> Ledger:
    """Compare registration_notifications with what the wires on the provider host accepted."""
    rows = cluster.sql("SELECT id, channel, status, provider_message_id, error_code, "
                       "skip_reason FROM registration_notifications")
    accepted = {"sms": cluster.twilio.sends(), "email": cluster.resend.sends()}
    counts = {ch: Counter(s.id for s in sends) for ch, sends in accepted.items()}
    known: dict[str, set[str]] = {"sms": set(), "email": set()}
    ledger = Ledger()
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
            known[r["channel"]].add(pid)
            if counts[r["channel"]][pid] != 1:
                ledger.lost += 1
                ledger.problems.append(
                    f"delivery {r['id']} says {r['status']} as {pid}, but the provider "
                    f"accepted that id {counts[r['channel']][pid]} time(s)")
    for channel, sends in accepted.items():
        for send in sends:
            if send.id not in known[channel]:
                ledger.duplicated += 1
                ledger.problems.append(
                    f"{channel} {send.id} to {send.to} accepted but no delivery records it")
    for wire in (cluster.twilio, cluster.resend):
        for copies in wire.duplicates():
            ledger.duplicated += len(copies) - 1
            ledger.problems.append(f"{copies[0].provider} accepted {copies[0].to} "
                                   f"{len(copies)} times")
    return ledger
