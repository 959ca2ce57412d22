"""The ledger a cluster scenario ends with: the audit rows against the stand-ins' logs.

Every delivery is sent (the provider accepted its id exactly once) or failed
with a reason; nothing is still queued or sending; the providers accepted
nothing the database does not know, and no message twice (every text and
e-mail of a scenario is unique, so two accepted copies are a double send).
"""

from __future__ import annotations

from tests.cluster.harness import Cluster
from tests.reliability.ledger import Ledger, judge


def take(cluster: Cluster) -> Ledger:
    """Compare registration_notifications with what the wires on the provider host accepted."""
    rows = cluster.sql("SELECT id, channel, status, provider_message_id, error_code, "
                       "skip_reason FROM registration_notifications")
    accepted = {"sms": cluster.twilio.sends(), "email": cluster.resend.sends()}
    return judge(rows, accepted, [*cluster.twilio.duplicates(), *cluster.resend.duplicates()])
