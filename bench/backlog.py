"""A backlog at the providers' default limits: how close the drain comes to the bound.

The wires enforce the same per-second limits as the settings' defaults
(Resend 2 requests/s, Twilio TWILIO_RATE_PER_S), so a sender that crowded a
second would meet 429s and fall behind.

- backlog_drain_ratio: time to drain `emails` e-mails (of which `texts`
  registrations also want a text) / the bound the limits set, which is
  max(ceil(emails / batch) / resend rate, texts / twilio rate).
- email_batch_speedup: e-mails per second in batches of RESEND_BATCH_SIZE /
  one e-mail per request, at the same Resend limit.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import psycopg

from bench import workload
from bench.stack import Stack
from tasks.settings import Settings
from tests.worker_process import WorkerProcess, regnotify_worker_argv

#: A worker as `regnotify up` starts one (16 threads, the default concurrency).
THREADS = 16


@dataclass(frozen=True)
class Limits:
    """The defaults the settings ship with."""

    resend_per_s: float
    twilio_per_s: float
    batch: int

    @classmethod
    def defaults(cls) -> Limits:
        fields = Settings.model_fields
        return cls(float(fields["resend_rate_per_s"].default),
                   float(fields["twilio_rate_per_s"].default),
                   int(fields["resend_batch_size"].default))


@dataclass
class Drain:
    """One drain's timings (seconds from the tick)."""

    emails: int
    texts: int
    emails_s: float
    texts_s: float
    requests_429: int

    @property
    def seconds(self) -> float:
        return max(self.emails_s, self.texts_s)


def _seed(url: str, emails: int, texts: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        workload.reset(conn)
        workload.seed_registrations(conn, emails, pref="email")
        conn.execute(
            "UPDATE public.registrations SET notification_pref = 'both' WHERE id IN ("
            " SELECT id FROM public.registrations ORDER BY customer_phone LIMIT %s)", (texts,))
        workload.seed_due(conn, emails)


def _drain(stack: Stack, limits: Limits, emails: int, texts: int, *, batch: int,
           name: str, timeout_s: float) -> Drain:
    """Seed, start a worker at `limits`, tick once, wait for every send."""
    from tasks.broker.app import create_app

    _seed(stack.pg.url, emails, texts)
    for wire in (stack.twilio, stack.resend):
        wire.reset()
    stack.resend.configure(latency=0.02, max_rps=limits.resend_per_s)
    stack.twilio.configure(latency=0.02, max_rps=limits.twilio_per_s)
    env = {**stack.env, "RESEND_RATE_PER_S": str(limits.resend_per_s),
           "TWILIO_RATE_PER_S": str(limits.twilio_per_s), "RESEND_BATCH_SIZE": str(batch)}
    app = create_app()
    app.conf.broker_url = stack.redis.url
    worker = WorkerProcess(regnotify_worker_argv(THREADS), env, stack.root / f"{name}.log")
    worker.start(app, timeout=60)
    try:
        started = time.time()
        app.send_task("process_notification_queue")
        deadline = time.monotonic() + timeout_s
        while (stack.resend.accepted_count() < emails
               or stack.twilio.accepted_count() < texts):
            if time.monotonic() > deadline:
                raise RuntimeError(f"backlog not drained in {timeout_s} s:\n{worker.log()}")
            time.sleep(0.05)
    finally:
        worker.stop()
        app.close()
        for wire in (stack.twilio, stack.resend):
            wire.configure(max_rps=None, latency=0.0)
    last_email = max((s.accepted_at for s in stack.resend.sends()), default=started)
    last_text = max((s.accepted_at for s in stack.twilio.sends()), default=started)
    rejected = sum(w.stats()["by_status"].get("429", 0) for w in (stack.twilio, stack.resend))
    return Drain(emails, texts, round(last_email - started, 2), round(last_text - started, 2),
                 rejected)


def bound_s(limits: Limits, emails: int, texts: int) -> float:
    """The least time the limits allow for the backlog (both channels go in parallel)."""
    return max(math.ceil(emails / limits.batch) / limits.resend_per_s,
               texts / limits.twilio_per_s)


def measure(stack: Stack, *, emails: int, texts: int, single_emails: int) -> dict[str, object]:
    """Both figures, and what they came from."""
    limits = Limits.defaults()
    backlog = _drain(stack, limits, emails, texts, batch=limits.batch, name="backlog-worker",
                     timeout_s=600)
    bound = bound_s(limits, emails, texts)
    one_by_one = _drain(stack, limits, single_emails, 0, batch=1, name="one-by-one-worker",
                        timeout_s=600)
    batched_per_s = emails / backlog.emails_s
    single_per_s = single_emails / one_by_one.emails_s
    with psycopg.connect(stack.pg.url, autocommit=True) as conn:
        workload.reset(conn)
    return {
        "backlog_drain_ratio": round(backlog.seconds / bound, 3),
        "email_batch_speedup": round(batched_per_s / single_per_s, 1),
        "limits": asdict(limits),
        "bound_s": round(bound, 2),
        "backlog": asdict(backlog),
        "one_by_one": asdict(one_by_one),
        "emails_per_s_batched": round(batched_per_s, 1),
        "emails_per_s_one_by_one": round(single_per_s, 2),
    }
