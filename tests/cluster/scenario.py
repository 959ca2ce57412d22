"""What the cluster scenarios share: the standard stack, a seeded backlog, the drain."""

from __future__ import annotations

import math
import re
import time

from tests.cluster.harness import Cluster, wait_until

#: The providers' limits the stand-ins enforce (429 above them): Resend's
#: documented default, 2 requests/s; Twilio at regnotify's default
#: TWILIO_RATE_PER_S (10 MPS: a Messaging Service of ten long codes, or a
#: toll-free number with raised throughput).
TWILIO_RPS = 10
RESEND_RPS = 2
BATCH = 100
WORKER_HOSTS = ("w1", "w2", "w3")


def start_stack(cluster: Cluster, *, broker_url: str | None = None, concurrency: int = 4,
                twilio_latency: float = 0.02, **env: str) -> dict[str, str]:
    """PostgreSQL, Redis (unless `broker_url`), the wires, three workers and the relay.

    The workers and the relay start together (each takes seconds to import).
    """
    cluster.start_postgres()
    if broker_url is None:
        cluster.start_redis()
    cluster.start_wires(twilio_rps=TWILIO_RPS, resend_rps=RESEND_RPS,
                        twilio_latency=twilio_latency)
    app_env = cluster.app_env(broker_url or cluster.redis_url, **{
        "TWILIO_RATE_PER_S": str(TWILIO_RPS),
        "RESEND_RATE_PER_S": str(RESEND_RPS),
        "PROVIDER_TIMEOUT_S": "2",
        "SEND_MAX_RETRIES": "12",
        "SEND_RETRY_BACKOFF_BASE": "0.2",
        "SEND_RETRY_BACKOFF_MAX": "3",
        # Production's 120 s; a task merely waiting its turn is not re-sent early.
        "SWEEP_AFTER_S": "60",
        **env,
    })
    workers = cluster.spawn_workers(WORKER_HOSTS, app_env, concurrency)
    cluster.start_relay(app_env)
    cluster.wait_workers(workers)
    return app_env


def seed_backlog(cluster: Cluster, count: int, *, prefix: str = "+1555700",
                 mark: str = "c") -> None:
    """`count` registrations with both channels, each with one change, all due now.

    `mark` starts every name and address, so a second backlog's messages
    differ from the first's (two equal copies count as a double send).
    """
    cluster.sql(
        "INSERT INTO registrations (customer_name, customer_phone, customer_email) "
        "SELECT %s || ' Cluster ' || i, %s || lpad(i::text, 4, '0'), "
        "%s || i || '@example.com' FROM generate_series(1, %s) AS i",
        (mark, prefix, mark, count))
    cluster.sql("UPDATE registrations SET current_stage = 'submitted_to_dmv' "
                "WHERE current_stage IS DISTINCT FROM 'submitted_to_dmv'")
    cluster.sql("UPDATE notification_queue SET send_after = now() - interval '1 second' "
                "WHERE NOT sent")


def moving(cluster: Cluster) -> int:
    """Queue rows not yet claimed plus deliveries queued or sending."""
    row = cluster.sql(
        "SELECT (SELECT count(*) FROM notification_queue WHERE NOT sent) + "
        "(SELECT count(*) FROM registration_notifications "
        " WHERE status IN ('queued', 'sending')) AS n")[0]
    return int(row["n"])


def wait_drained(cluster: Cluster, timeout_s: float) -> float:
    """Seconds until nothing is pending or moving (a host cut off may make polls fail)."""
    started = time.monotonic()
    wait_until(lambda: moving(cluster) == 0, timeout_s, "the backlog to drain", every_s=0.5)
    return time.monotonic() - started


def bound_s(registrations: int) -> float:
    """The fastest the limits allow: texts at TWILIO_RPS, e-mail batches at RESEND_RPS."""
    return max(registrations / TWILIO_RPS, math.ceil(registrations / BATCH) / RESEND_RPS)


_SEND_DONE = re.compile(r"Task send_(?:sms|email|email_batch)\[[^\]]+\] succeeded in")


def sent_by_host(cluster: Cluster) -> dict[str, int]:
    """Send tasks (texts, e-mails, batches) each worker host's log reports done."""
    return {role: len(_SEND_DONE.findall(cluster.log(f"worker-{role}")))
            for role in WORKER_HOSTS}
