"""A stateful model of the send path: the next breaking sequence is found by a machine.

Hypothesis's RuleBasedStateMachine drives the real stack (PostgreSQL, Redis,
the real task code run eagerly or by direct call, the real twilio and resend
SDKs against the wire stand-ins) through any order of: bursts of stage
changes (silenced or not), `send --now`, `retry-failed`, the customer
changing preference, language, contact, opting out and in, replies, time
moving (debounce, max-wait, quiet-hours edges in the customer's zone, lease
expiry, the 23 h key age), queue runs, one step of a delivery or batch,
provider faults, a worker dying before or after the provider accepted, and a
second worker running the same delivery at once.

After every step the promises are checked against the stand-ins' own
ledgers (see `_check_step`); at the end of each example the machine drains
(time moves on, faults stop, queue runs) and checks that nothing was lost
and that the audit agrees with what the providers accepted.

Budget: REGNOTIFY_MODEL_PROFILE=ci (default: a few minutes at most) or
soak (longer); see docs/guarantees-model.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.flow import run_tick
from tests.pg import new_registration
from tests.send_path_model_support import (
    SlowCalls,
    WorkerDied,
    concurrently,
    move_clock,
    reset_clock,
    restore_world_env_after,
    seconds_to_local,
    set_world,
    worker_dies,
)

pytestmark = pytest.mark.usefixtures("pipeline")

STAFF = "desk@lonestar.test"
STAGES = ("documents_collected", "submitted_to_dmv", "dmv_processing", "sticker_ready",
          "sticker_delivered", "needs_attention", "sale_complete")
ZONES = (None, "Asia/Tokyo", "America/Los_Angeles")
#: The dealership's zone (notification_config.default_time_zone) in the model.
HOME_ZONE = "America/Chicago"

PROFILES = {
    "smoke": {"max_examples": 1, "stateful_step_count": 10},
    "ci": {"max_examples": 60, "stateful_step_count": 30},
    "soak": {"max_examples": 200, "stateful_step_count": 60},
}

SMS_FAULTS = ("lost_answer", "drop", "429:0", "500", "21211", "21610")
EMAIL_FAULTS = ("lost_answer", "drop", "429:0", "daily_quota_exceeded", "500",
                "validation_error", "concurrent_idempotent_requests")
#: The worlds an example runs in. PROVIDER_TIMEOUT_S 0.3: every worst case is
#: real and short (a lost answer is a real read timeout). 10, the default:
#: the production bounds (a 55 s lease, a 25 s gate hold), whose worst-case
#: calls pass on the model's clock (a lost answer: the connection closed
#: after the provider accepted, the same to the client as its read timeout).
TIMEOUTS = (0.3, 10.0)
COORDINATION = ("redis", "postgresql")
#: The worker's `-c`: above the WORKER_CONCURRENCY setting (2) of the world.
THREADS = (4, 8)

_ctx: dict[str, Any] = {}
STATS: Counter[str] = Counter()
FAULT_LOG: list[str] = []
#: The steps of the example running now (the one that failed, after a failure):
#: a failure that depends on real time may not replay, and Hypothesis then
#: prints no sequence of its own.
STEP_LOG: list[str] = []
#: The steps of the first example that failed, and its error.
FIRST_FAILURE: list[str] = []


def _keep_first_failure(exc: BaseException) -> None:
    if not FIRST_FAILURE:
        FIRST_FAILURE.extend([*STEP_LOG, f"failed: {type(exc).__name__}: {exc}"])


class SendPathModel(RuleBasedStateMachine):
    """Customers, staff, time, workers and providers, in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.conn = _ctx["conn"]
        self.twilio = _ctx["twilio"]
        self.resend = _ctx["resend"]
        self.step_no = 0
        self.regs: list[str] = []
        self.phone_seq = 0
        self.mail_seq = 0
        self.reply_seq = 0
        #: Twilio SIDs and Resend ids already checked.
        self.seen_sms = 0
        self.seen_mail = 0
        self.timeout_s = 1.0
        self.threads = 1
        #: Deliveries staff re-queued with `retry-failed` after a lost answer.
        self.forced: set[int] = set()
        _ctx["model"] = self
        STEP_LOG.clear()
        STATS["examples"] += 1

    # ── set-up ────────────────────────────────────────────────────────────
    @initialize(timeout_s=st.sampled_from(TIMEOUTS), coordination=st.sampled_from(COORDINATION),
                threads=st.sampled_from(THREADS))
    def fresh_world(self, timeout_s: float, coordination: str, threads: int) -> None:
        from tasks.sending.bounds import lease_seconds
        from tasks.settings import get_settings

        conn = self.conn
        if os.environ.get("REGNOTIFY_MODEL_TIMEOUT"):
            # To look at one world only (the production bounds: 10).
            timeout_s = float(os.environ["REGNOTIFY_MODEL_TIMEOUT"])
        set_world(timeout_s=timeout_s, coordination=coordination, threads=threads,
                  redis_url=_ctx["redis_url"])
        self.timeout_s, self.threads = timeout_s, threads
        STEP_LOG.append(f"world: PROVIDER_TIMEOUT_S={timeout_s}, {coordination}, -c {threads}")
        slow: SlowCalls = _ctx["slow"]
        slow.clear()
        slow.timeout_s, slow.lease_s = timeout_s, lease_seconds(get_settings())
        STATS[f"world:timeout {timeout_s}s, {coordination}, -c {threads}"] += 1
        conn.execute("TRUNCATE registration_notifications, notification_queue, registrations, "
                     "sms_opt_outs, webhook_events, inbound_messages, reply_digests, "
                     # A MessageSid seen in an earlier example would read as a replay.
                     "seen_message_sids RESTART IDENTITY CASCADE")
        conn.execute(
            "UPDATE notification_config SET quiet_hours_start = '21:00', "
            "quiet_hours_end = '08:00', quiet_hours_channels = '{sms}', "
            "default_time_zone = %s, staff_email = %s, debounce_window = interval '10 seconds', "
            "max_wait = interval '60 seconds', fallback_enabled = true", (HOME_ZONE, STAFF))
        if os.environ.get("REGNOTIFY_MODEL_QUIET") == "off":
            # To look past a quiet-hours failure for the next one (old code).
            conn.execute("UPDATE notification_config SET quiet_hours_channels = '{}'")
        reset_clock(conn)
        _ctx["redis"].flushdb()  # the last example's messages and slots
        for wire in (self.twilio, self.resend):
            wire.reset(config=True)
        for i, zone in enumerate(ZONES):
            self.regs.append(new_registration(
                conn, customer_name=f"Customer {i}", customer_phone=self._phone(),
                customer_email=self._mail(), notification_pref="both", time_zone=zone,
                current_stage="sale_complete"))
        # Every example starts with work in flight: one burst per customer,
        # claimed by a queue run, its deliveries waiting for a worker.
        for reg in self.regs:
            conn.execute("UPDATE registrations SET current_stage = 'documents_collected' "
                         "WHERE id = %s", (reg,))
        conn.execute("UPDATE notification_queue SET send_after = now() - interval '1 second'")
        run_tick()

    def _phone(self) -> str:
        self.phone_seq += 1
        return f"+1555777{self.phone_seq:04d}"

    def _mail(self) -> str:
        self.mail_seq += 1
        return f"c{self.mail_seq}@example.com"

    # ── a step: snapshot, act, check ──────────────────────────────────────
    def _snapshot(self) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT r.id::text AS id, r.notification_pref, r.customer_phone, r.customer_email, "
            "coalesce(o.opted_out, false) AS opted_out, "
            "('sms' = ANY(c.quiet_hours_channels) AND public.quiet_hours_release_now("
            "coalesce(r.time_zone, c.default_time_zone), c.quiet_hours_start, "
            "c.quiet_hours_end) IS NOT NULL) AS quiet "
            "FROM registrations AS r CROSS JOIN notification_config AS c "
            "LEFT JOIN sms_opt_outs AS o ON o.phone = r.customer_phone").fetchall()
        return {r["id"]: r for r in rows}

    def _step(self, name: str, action: Any) -> None:
        self.step_no += 1
        STATS["steps"] += 1
        STEP_LOG.append(f"{self.step_no}: {name}")
        STATS[f"rule:{name.split(' [')[0].split(' for ')[0]}"] += 1
        try:
            before = self._snapshot()
            with contextlib.suppress(WorkerDied):  # the worker's death ends only its task
                action()
            slow: SlowCalls = _ctx["slow"]
            errors = [e for e in slow.errors if not isinstance(e, WorkerDied)]
            slow.errors.clear()
            if errors:
                raise errors[0]
            self._check_step(before, self._snapshot(), name)
            if name.startswith("drain"):
                # Hypothesis checks invariants after its rules; the drain's steps too.
                self.at_most_one_message_per_burst_and_channel()
        except BaseException as exc:
            _keep_first_failure(exc)
            raise

    def _delivery_by(self, column: str, value: Any) -> list[dict[str, Any]]:
        return self.conn.execute(
            "SELECT n.*, q.bypass_quiet_hours, q.notify_customer "
            "FROM registration_notifications AS n "
            f"LEFT JOIN notification_queue AS q ON q.id = n.queue_id WHERE n.{column} = %s",
            (value,)).fetchall()

    def _check_step(self, before: dict[str, Any], after: dict[str, Any], name: str) -> None:
        """The promises, for every message a provider accepted during this step."""
        texts = self.twilio.sends()
        for send in texts[self.seen_sms:]:
            owner = [r for r in before.values() if r["customer_phone"] == send.to]
            assert owner, f"step {self.step_no} ({name}): a text to {send.to}, nobody's number"
            reg = owner[0]
            rows = self._delivery_by("provider_message_id", send.id) or [
                r for r in self._delivery_by("recipient", send.to)
                if r["channel"] == "sms" and r["body"] == send.body]
            fallback = any(r["fallback_for"] is not None for r in rows)
            allowed = reg["notification_pref"] in ("sms", "both") or (
                fallback and reg["notification_pref"] != "none")
            assert allowed, f"step {self.step_no} ({name}): text against preference {reg}"
            assert not reg["opted_out"], f"step {self.step_no} ({name}): text to opted-out {reg}"
            bypass = any(r["bypass_quiet_hours"] for r in rows)
            night = reg["quiet"] and after[reg["id"]]["quiet"]
            assert bypass or not night, (
                f"step {self.step_no} ({name}): a text in quiet hours to {send.to}")
        self.seen_sms = len(texts)
        mails = self.resend.sends()
        for send in mails[self.seen_mail:]:
            if send.to == STAFF:
                continue
            owner = [r for r in before.values() if r["customer_email"] == send.to]
            assert owner, f"step {self.step_no} ({name}): an e-mail to {send.to}, nobody's address"
            reg = owner[0]
            delivery_id = _tag(send, "delivery")
            rows = self._delivery_by("id", int(delivery_id)) if delivery_id else []
            fallback = any(r["fallback_for"] is not None for r in rows)
            allowed = reg["notification_pref"] in ("email", "both") or (
                fallback and reg["notification_pref"] != "none")
            assert allowed, f"step {self.step_no} ({name}): e-mail against preference {reg}"
            assert not (fallback and reg["opted_out"]), (
                f"step {self.step_no} ({name}): a fallback e-mail to an opted-out customer")
        self.seen_mail = len(mails)

    @invariant()
    def at_most_one_message_per_burst_and_channel(self) -> None:
        try:
            self._at_most_one_message_per_burst_and_channel()
        except AssertionError as exc:
            _keep_first_failure(exc)
            raise

    def _at_most_one_message_per_burst_and_channel(self) -> None:
        per_burst: Counter[tuple[Any, ...]] = Counter()
        for send in self.resend.sends():
            if send.to == STAFF:
                continue
            delivery_id = _tag(send, "delivery")
            row = self.conn.execute(
                "SELECT registration_id, queue_id, fallback_for FROM registration_notifications "
                "WHERE id = %s", (int(delivery_id),)).fetchone()
            if row is not None and int(delivery_id) not in self.forced:
                per_burst[(row["registration_id"], row["queue_id"], "email",
                           row["fallback_for"])] += 1
        texts: Counter[tuple[str, str | None]] = Counter()
        unrecorded: set[tuple[str, str | None]] = set()
        forced = self._forced_texts()
        for send in self.twilio.sends():
            if (send.to, send.body) in forced:
                continue
            row = self.conn.execute(
                "SELECT registration_id, queue_id, fallback_for FROM registration_notifications "
                "WHERE provider_message_id = %s", (send.id,)).fetchone()
            if row is not None:
                per_burst[(row["registration_id"], row["queue_id"], "sms",
                           row["fallback_for"])] += 1
            else:
                unrecorded.add((send.to, send.body))
            texts[(send.to, send.body)] += 1
        doubled = {k: n for k, n in per_burst.items() if n > 1}
        assert not doubled, f"step {self.step_no}: accepted twice: {doubled}"
        for (to, body), n in texts.items():
            if (to, body) not in unrecorded:
                continue
            # Some not recorded (yet): as many texts, recorded or not, as bursts
            # claimed with this text, at most.
            bursts = self.conn.execute(
                "SELECT count(DISTINCT (queue_id, fallback_for)) AS n "
                "FROM registration_notifications WHERE channel = 'sms' AND recipient = %s "
                "AND body = %s", (to, body)).fetchone()["n"]
            assert n <= bursts, f"step {self.step_no}: {n} texts '{body[:30]}' to {to}"
        staff = Counter((s.content) for s in self.resend.sends() if s.to == STAFF)
        assert all(n == 1 for n in staff.values()), f"step {self.step_no}: a digest went twice"

    # ── staff ─────────────────────────────────────────────────────────────
    @rule(who=st.integers(0, 2), stages=st.lists(st.sampled_from(STAGES), min_size=1,
                                                    max_size=3), silence=st.booleans())
    def burst_of_stage_changes(self, who: int, stages: list[str], silence: bool) -> None:
        def act() -> None:
            for stage in stages:
                self.conn.execute(
                    "UPDATE registrations SET current_stage = %s, pending_notify_customer = %s "
                    "WHERE id = %s", (stage, False if silence else None, self.regs[who]))
        self._step("stage changes", act)

    @rule(who=st.integers(0, 2), stages=st.lists(st.sampled_from(STAGES), min_size=1,
                                                    max_size=2))
    def another_burst(self, who: int, stages: list[str]) -> None:
        # The busiest thing staff do: weighted twice among the rules.
        self.burst_of_stage_changes(who, stages, False)

    @rule(who=st.integers(0, 2))
    def send_now(self, who: int) -> None:
        from tasks.cli.main import main

        self._step("send --now", lambda: main(["send", self.regs[who], "--now"]))

    @rule()
    def retry_failed(self) -> None:
        from tasks.cli.main import main

        def act() -> None:
            # Staff re-queue what failed, outcome unknown included: the command
            # warns those "may arrive twice", which is theirs to decide.
            self.forced |= {r["id"] for r in self.conn.execute(
                "SELECT id FROM registration_notifications "
                "WHERE status = 'failed' AND outcome_unknown")}
            main(["retry-failed"])
        self._step("retry-failed", act)

    def _forced_texts(self) -> set[tuple[str, str]]:
        return {(r["recipient"], r["body"]) for r in self.conn.execute(
            "SELECT recipient, body FROM registration_notifications "
            "WHERE channel = 'sms' AND id = ANY(%s)", (list(self.forced),))}

    # ── the customer ──────────────────────────────────────────────────────
    @rule(who=st.integers(0, 2), pref=st.sampled_from(("sms", "email", "both", "none")))
    def change_preference(self, who: int, pref: str) -> None:
        self._step("preference", lambda: self.conn.execute(
            "UPDATE registrations SET notification_pref = %s WHERE id = %s",
            (pref, self.regs[who])))

    @rule(who=st.integers(0, 2), language=st.sampled_from(("en", "es")))
    def change_language(self, who: int, language: str) -> None:
        self._step("language", lambda: self.conn.execute(
            "UPDATE registrations SET language = %s WHERE id = %s", (language, self.regs[who])))

    @rule(who=st.integers(0, 2), channel=st.sampled_from(("sms", "email")))
    def change_contact(self, who: int, channel: str) -> None:
        column, value = (("customer_phone", self._phone()) if channel == "sms"
                         else ("customer_email", self._mail()))
        self._step("contact", lambda: self.conn.execute(
            f"UPDATE registrations SET {column} = %s WHERE id = %s", (value, self.regs[who])))

    @rule(who=st.integers(0, 2), out=st.booleans())
    def opt_out_or_in(self, who: int, out: bool) -> None:
        from db.deliveries import set_sms_opt_out
        from tasks.database import engine

        def act() -> None:
            phone = self.conn.execute("SELECT customer_phone FROM registrations WHERE id = %s",
                                      (self.regs[who],)).fetchone()["customer_phone"]
            with engine().begin() as c:
                set_sms_opt_out(c, phone, opted_out=out, source="model")
        self._step("opt out" if out else "opt in", act)

    @rule(who=st.integers(0, 3))
    def reply_arrives(self, who: int) -> None:
        from db import replies
        from tasks.database import engine

        self.reply_seq += 1
        seq = self.reply_seq

        def act() -> None:
            phone = ("+15550000000" if who == 3 else self.conn.execute(
                "SELECT customer_phone FROM registrations WHERE id = %s",
                (self.regs[who],)).fetchone()["customer_phone"])
            with engine().begin() as c:
                inbound = replies.record(c, message_sid=f"SMmodel{seq:08d}", from_phone=phone,
                                         to_phone="+15005550006", body=f"reply number {seq}",
                                         twilio_kind=None)
                replies.join_digest(c, inbound, phone)
        self._step("reply", act)

    # ── time ──────────────────────────────────────────────────────────────
    # Past a debounce window (10 s) or max-wait (60 s), a lease (19 s with
    # PROVIDER_TIMEOUT_S=1), a parked retry, the quiet night, the 23 h key age.
    @rule(seconds=st.sampled_from((1, 12, 20, 40, 65, 3 * 3600, 23 * 3600 + 60)))
    def time_passes(self, seconds: int) -> None:
        self._step(f"time +{seconds}s", lambda: move_clock(self.conn, seconds))

    @rule(edge=st.sampled_from(("20:59:00", "21:01:00", "07:59:00", "08:01:00")),
          zone=st.sampled_from((HOME_ZONE, "Asia/Tokyo", "America/Los_Angeles")))
    def to_a_quiet_hours_edge(self, edge: str, zone: str) -> None:
        self._step(f"clock to {edge} {zone}", lambda: move_clock(
            self.conn, seconds_to_local(self.conn, zone, edge)))

    # ── workers and providers ─────────────────────────────────────────────
    @rule()
    def queue_run(self) -> None:
        self._step("queue run", run_tick)

    @rule(pick=st.integers(0, 30))
    def a_worker_takes_a_task(self, pick: int) -> None:
        # Delivery steps weighted up: most of a worker's life.
        self.one_delivery_step(pick, None, False)

    @rule(pick=st.integers(0, 30),
          die=st.sampled_from((None, None, "before_call", "after_accept")),
          twice=st.booleans())
    def one_delivery_step(self, pick: int, die: str | None, twice: bool) -> None:
        rows = _due_deliveries(self.conn)
        if not rows:
            return
        row = rows[pick % len(rows)]

        def one() -> None:
            _send_step(row["id"], row["channel"])

        def act() -> None:
            with worker_dies(die):
                if twice:
                    errors = concurrently(one, one)
                    died = [e for e in errors if isinstance(e, WorkerDied)]
                    others = [e for e in errors if not isinstance(e, WorkerDied)]
                    if others:
                        raise others[0]
                    if died:
                        raise died[0]
                else:
                    one()
        label = "two workers" if twice else "one worker"
        self._step(f"delivery step, {label}{' (dies ' + die + ')' if die else ''}"
                   f" [delivery {row['id']} {row['channel']}]", act)

    @rule(size=st.integers(2, 3), die=st.sampled_from((None, None, "before_call",
                                                        "after_accept")))
    def a_batch_of_emails(self, size: int, die: str | None) -> None:
        # What send_email_batch runs when several e-mails are due together.
        ids = [r["id"] for r in _due_deliveries(self.conn) if r["channel"] == "email"][:size]
        if not ids:
            return

        def act() -> None:
            from tasks.sending import email_batch

            with worker_dies(die):
                email_batch.run(ids)
        self._step(f"e-mail batch of {len(ids)}{' (dies ' + die + ')' if die else ''}", act)

    @rule(die=st.sampled_from((None, None, "before_call", "after_accept")))
    def one_digest_step(self, die: str | None) -> None:
        claims = _digest_claims(self.conn)
        if not claims:
            return
        ids, token = claims[0]

        def act() -> None:
            from tasks.worker import send_reply_digest

            with worker_dies(die):
                send_reply_digest.run(ids, token)
        self._step(f"digest step{' (dies ' + die + ')' if die else ''}", act)

    @rule(who=st.integers(0, 3), channel=st.sampled_from(("sms", "email")),
          sms_fault=st.sampled_from(SMS_FAULTS), email_fault=st.sampled_from(EMAIL_FAULTS))
    def provider_fault(self, who: int, channel: str, sms_fault: str, email_fault: str) -> None:
        if who == 3:
            address, fault, wire = STAFF, email_fault, self.resend
        else:
            column = "customer_phone" if channel == "sms" else "customer_email"
            address = self.conn.execute(f"SELECT {column} AS a FROM registrations WHERE id = %s",
                                        (self.regs[who],)).fetchone()["a"]
            fault = sms_fault if channel == "sms" else email_fault
            wire = self.twilio if channel == "sms" else self.resend
        STATS[f"fault:{channel if who < 3 else 'staff'}:{fault}"] += 1
        FAULT_LOG.append(f"example {STATS['examples']} step {self.step_no + 1}: "
                         f"{fault} for {address}")
        token = self._fault_token(fault)
        self._step(f"fault {token} for {address}", lambda: wire.script(address, [token]))

    @rule(who=st.integers(0, 3), channel=st.sampled_from(("sms", "email")),
          kind=st.sampled_from(("worst", "worst", "past_lease")), times=st.integers(1, 2),
          first=st.sampled_from((None, None, "drop", "lost_answer")))
    def slow_provider(self, who: int, channel: str, kind: str, times: int,
                      first: str | None) -> None:
        """The next call(s) for an address are slow: at the adapters' worst, or
        answered after the claim's lease lapsed; meanwhile the queue run's
        sweep and a second worker run (see SlowCalls). Two: a lookup and the
        send after it. `first`: the call before them fails so (its retry looks up)."""
        if who == 3:
            address = STAFF
        else:
            column = "customer_phone" if channel == "sms" else "customer_email"
            address = self.conn.execute(f"SELECT {column} AS a FROM registrations WHERE id = %s",
                                        (self.regs[who],)).fetchone()["a"]
        STATS[f"fault:{channel if who < 3 else 'staff'}:slow {kind}"] += times
        if first:
            STATS[f"fault:{channel if who < 3 else 'staff'}:{first}"] += 1
        FAULT_LOG.append(f"example {STATS['examples']} step {self.step_no + 1}: "
                         f"{first + ', then ' if first else ''}slow {kind} x{times} for {address}")
        wire = self.twilio if channel == "sms" and who < 3 else self.resend

        # Any next call on the channel (an address may change or never be
        # sent to again); after a scripted failure, the address's own.
        target = address if first else f"*{'email' if who == 3 else channel}"

        def act() -> None:
            if first:
                wire.script(address, [self._fault_token(first)])
                _ctx["slow"].arm(address, None)  # that call itself is not slow
            for _ in range(times):
                _ctx["slow"].arm(target, kind)
        self._step(f"fault {first + ', then ' if first else ''}slow {kind} x{times} for {address}",
                   act)

    def _a_text_is_due(self) -> bool:
        return any(r["channel"] == "sms" for r in _due_deliveries(self.conn))

    @precondition(_a_text_is_due)
    @rule(pick=st.integers(0, 30), first=st.sampled_from(("drop", "drop", "lost_answer")))
    def a_text_retried_at_its_worst(self, pick: int, first: str) -> None:
        """A worker sends a due text and its connection drops (Twilio may have
        it: `first`); the retry's lookup and its send then each take the
        adapters' worst while the sweep and a second worker run (SlowCalls).
        The same faults as `provider_fault` and `slow_provider`, armed on the
        one text a worker takes now: armed on any address they are mostly
        used up by other calls, or cleared by the drain, before a retry."""
        rows = self.conn.execute(
            "SELECT n.id, coalesce(n.recipient, r.customer_phone) AS address "
            "FROM registration_notifications AS n JOIN registrations AS r "
            "ON r.id = n.registration_id WHERE n.id = ANY(%s) ORDER BY n.id",
            ([r["id"] for r in _due_deliveries(self.conn) if r["channel"] == "sms"],)
        ).fetchall()
        if not rows:
            return
        row = rows[pick % len(rows)]
        address = row["address"]
        STATS[f"fault:sms:{first}"] += 1
        STATS["fault:sms:slow worst"] += 2
        STATS["rule:text retried at its worst, armed"] += 1
        FAULT_LOG.append(f"example {STATS['examples']} step {self.step_no + 1}: {first}, "
                         f"then slow worst x2 for {address} [delivery {row['id']}]")

        def act() -> None:
            self.twilio.script(address, [self._fault_token(first)])
            slow: SlowCalls = _ctx["slow"]
            slow.arm(address, None)  # the first attempt itself is not slow
            slow.arm(address, "worst")  # the retry's lookup
            slow.arm(address, "worst")  # and its send
            _send_step(row["id"], "sms")
        self._step(f"delivery step, {first}, then slow worst x2 for {address} "
                   f"[delivery {row['id']} sms]", act)

    @precondition(_a_text_is_due)
    @rule(pick=st.integers(0, 30))
    def another_text_retried_at_its_worst(self, pick: int) -> None:
        # Weighted twice among the rules, and drawn only while a text is due:
        # the 10 s world, where a lease short of both calls shows, is half the examples.
        self.a_text_retried_at_its_worst(pick, "drop")

    def _fault_token(self, fault: str) -> str:
        if fault == "lost_answer":
            # Accepted, the answer never comes: a real read timeout where it is short.
            return (f"timeout_after_accept:{self.timeout_s + 0.3}" if self.timeout_s < 1
                    else "drop_after_accept")
        return fault

    def while_a_call_is_out(self, seconds: float) -> None:
        """The rest of the world while a provider call is held: time passes,
        the queue run's sweep re-drives what lapsed, a second worker runs it."""
        conn = self.conn
        move_clock(conn, seconds)
        with contextlib.suppress(WorkerDied):
            run_tick()
            for row in _due_deliveries(conn):
                _send_step(row["id"], row["channel"])
            for ids, token in _digest_claims(conn):
                _digest_run(ids, token)

    @rule()
    def concurrent_sends(self) -> None:
        """As many sends at once as the worker has threads, through the real
        tasks, each call slow enough that they all hold their connection together."""
        rows = _due_deliveries(self.conn)
        if not rows:
            return
        picks = [rows[i % len(rows)] for i in range(self.threads)]

        def act() -> None:
            import sqlalchemy.exc

            from tasks.worker.send_email import send_email
            from tasks.worker.send_sms import send_sms

            latency = min(self.timeout_s * 0.6, 0.25)
            results: list[Any] = [None] * len(picks)

            def one(i: int) -> Any:
                task = send_sms if picks[i]["channel"] == "sms" else send_email
                return lambda: results.__setitem__(i, task.apply((picks[i]["id"],)))
            for wire in (self.twilio, self.resend):
                wire.configure(latency=latency)
            try:
                errors = concurrently(*(one(i) for i in range(len(picks))))
            finally:
                for wire in (self.twilio, self.resend):
                    wire.configure(latency=0.0)
            if errors:
                raise errors[0]
            for row, result in zip(picks, results, strict=True):
                if result is not None and result.failed():
                    exc = result.result
                    assert not isinstance(exc, sqlalchemy.exc.TimeoutError), (
                        f"step {self.step_no}: delivery {row['id']}: a QueuePool timeout "
                        f"ended its send without a retry ({self.threads} threads): {exc}")
                    raise AssertionError(f"delivery {row['id']}: its task failed: {exc!r}")
        self._step(f"{len(picks)} sends at once", act)

    # ── the end of an example: drain, then nothing lost, audit agrees ─────
    def teardown(self) -> None:
        try:
            if self.regs:
                self._drain_and_check()
        finally:
            reset_clock(self.conn)

    def _drain_and_check(self) -> None:
        conn = self.conn
        for wire in (self.twilio, self.resend):
            wire.clear_scripts()
        # Slow calls still armed happen in the drain (they end in an answer):
        # most sends of an example are the drain's.
        for _ in range(6):
            self._step("drain: time +4h", lambda: move_clock(conn, 4 * 3600))
            self._step("drain: queue run", run_tick)
            for _ in range(6):
                due = _due_deliveries(conn)
                claims = _digest_claims(conn)
                if not due and not claims:
                    break
                emails = [r["id"] for r in due if r["channel"] == "email"]
                if len(emails) > 1:
                    self._step("drain: e-mail batch", lambda e=emails: _batch_run(e))
                    due = _due_deliveries(conn)  # what the batch left: one by one
                for row in due:
                    self._step("drain: delivery step", lambda r=row: _send_step(r["id"],
                                                                               r["channel"]))
                for ids, token in claims:
                    self._step("drain: digest step", lambda i=ids, t=token: _digest_run(i, t))
        open_bursts = conn.execute("SELECT count(*) AS n FROM notification_queue "
                                   "WHERE NOT sent").fetchone()["n"]
        assert open_bursts == 0, f"{open_bursts} burst(s) never claimed"
        moving = conn.execute(
            "SELECT id, channel, status, hold_reason, parked, lease_until, next_attempt_at, "
            "error_code FROM registration_notifications WHERE status IN ('queued', 'sending')"
        ).fetchall()
        assert not moving, f"lost: deliveries never final after the drain: {moving}"
        unsettled = conn.execute("SELECT id, status FROM reply_digests "
                                 "WHERE status NOT IN ('sent', 'failed')").fetchall()
        assert not unsettled, f"reply digests never final: {unsettled}"
        bad = conn.execute(
            "SELECT id, status, skip_reason, error_code FROM registration_notifications "
            "WHERE (status = 'skipped' AND skip_reason IS NULL) "
            "   OR (status = 'failed' AND error_code IS NULL)").fetchall()
        assert not bad, f"final without a reason: {bad}"
        # The audit agrees with what the providers accepted.
        for send in self.twilio.sends():
            rows = self._delivery_by("provider_message_id", send.id)
            if not rows:
                rows = [r for r in self._delivery_by("recipient", send.to)
                        if r["body"] == send.body and r["outcome_unknown"]
                        and r["status"] in ("failed", "skipped")]
            assert rows or (send.to, send.body) in self._forced_texts(), (
                f"Twilio accepted {send.id} to {send.to}; no delivery says so")
        for send in self.resend.sends():
            if send.to == STAFF:
                # Sent with this id, or failed after its key went out (a
                # digest keeps no outcome_unknown flag: its error says why).
                digest = conn.execute(
                    "SELECT status FROM reply_digests WHERE provider_message_id = %s "
                    "OR (status = 'failed' AND idempotency_key = %s)",
                    (send.id, send.idempotency_key)).fetchone()
                assert digest is not None, (
                    f"staff e-mail {send.id} accepted; no digest records it")
                continue
            (row,) = self._delivery_by("id", int(_tag(send, "delivery") or 0)) or [None]
            assert row is not None, f"Resend accepted {send.id}; no delivery"
            assert row["provider_message_id"] == send.id or row["id"] in self.forced or (
                row["status"] in ("failed", "skipped") and row["outcome_unknown"]), (
                f"Resend accepted {send.id} for delivery {row['id']}, which says "
                f"{row['status']} {row['provider_message_id']}")
        for row in conn.execute("SELECT id, channel, provider_message_id FROM "
                                "registration_notifications WHERE status = 'sent'"):
            wire = self.twilio if row["channel"] == "sms" else self.resend
            assert wire.get_send(row["provider_message_id"]) is not None, (
                f"delivery {row['id']} says sent as {row['provider_message_id']}; "
                "the provider never accepted it")


def _tag(send: Any, name: str) -> str | None:
    for tag in (send.payload or {}).get("tags") or []:
        if tag.get("name") == name:
            return str(tag.get("value"))
    return None


def _due_deliveries(conn: Any) -> list[dict[str, Any]]:
    """Deliveries a worker would run now: a task is due for them (not held, not
    parked, no live lease, no retry still in the future)."""
    return conn.execute(
        "SELECT id, channel FROM registration_notifications "
        "WHERE status IN ('queued', 'sending') AND hold_reason IS NULL AND NOT parked "
        "AND (lease_until IS NULL OR lease_until <= now()) "
        "AND (next_attempt_at IS NULL OR next_attempt_at <= now() + interval '2 seconds') "
        "ORDER BY id").fetchall()


def _digest_claims(conn: Any) -> list[tuple[list[int], str]]:
    """Each claim's digests still sending: what its send task would run."""
    rows = conn.execute(
        "SELECT claim_token, array_agg(id ORDER BY id) AS ids FROM reply_digests "
        "WHERE status = 'sending' AND claim_token IS NOT NULL GROUP BY claim_token "
        "ORDER BY min(id)").fetchall()
    return [(list(r["ids"]), r["claim_token"]) for r in rows]


def _batch_run(ids: list[int]) -> None:
    from tasks.sending import email_batch

    email_batch.run(ids)


def _digest_run(ids: list[int], token: str) -> None:
    from tasks.worker import send_reply_digest

    send_reply_digest.run(ids, token)


def _send_step(delivery_id: int, channel: str) -> None:
    """One run of the delivery's send task body, as a worker runs it (no re-publish)."""
    from tasks.sending import delivery_flow, email_batch

    outcome = delivery_flow.run(delivery_id, channel)
    if outcome.status == "in-batch":
        email_batch.run([delivery_id])


_PROFILE = os.environ.get("REGNOTIFY_MODEL_PROFILE", "ci")


# CI's profile takes one to three minutes beside the rest of the suite on 2
# cores; the timeout is far above that, so a slow machine is never mistaken
# for a failure (an interrupted example leaves the shared connection mid-query).
@pytest.mark.timeout(6 * 3600 if _PROFILE == "soak" else 900)
def test_the_send_path_model(conn, twilio_wire, resend_wire, redis_server, monkeypatch) -> None:
    import redis
    profile = _PROFILE
    budget = PROFILES[profile]
    from tasks import database
    from tasks.broker.app import app

    # The world's settings change per example; all of them are undone after.
    restore_world_env_after(monkeypatch)
    slow = SlowCalls(lambda seconds: _ctx["model"].while_a_call_is_out(seconds))
    _ctx.update(conn=conn, twilio=twilio_wire, resend=resend_wire, slow=slow,
                redis=redis.Redis.from_url(redis_server.url), redis_url=redis_server.url)
    twilio_wire.pause = resend_wire.pause = slow
    STATS.clear()
    FAULT_LOG.clear()
    FIRST_FAILURE.clear()
    # Not eager: what the queue run, `send --now` and `retry-failed` publish
    # waits in the broker, and the model's rules play the workers, one
    # delivery (or batch, or digest claim) at a time, in any order.
    app.conf.task_always_eager = False
    try:
        run_state_machine_as_test(SendPathModel, settings=settings(
            max_examples=budget["max_examples"],
            stateful_step_count=budget["stateful_step_count"],
            deadline=None, database=None, derandomize=profile == "ci",
            suppress_health_check=list(HealthCheck)))
    finally:
        app.conf.task_always_eager = True
        twilio_wire.pause = resend_wire.pause = None
        database._threads = None
        database.reset_engine()
        for kind in slow.fired:  # the slow calls that happened, not only armed
            STATS[f"slow call held: {kind}"] += 1
        report = {"profile": profile, **dict(sorted(STATS.items())),
                  "faults_at": FAULT_LOG[:400], "first_failure": FIRST_FAILURE}
        out = os.environ.get("REGNOTIFY_MODEL_REPORT")
        if out:
            with open(out, "w") as fh:
                json.dump(report, fh, indent=1)
        print(f"send-path model: {STATS['examples']} examples, {STATS['steps']} steps",
              file=sys.__stderr__)
        if FIRST_FAILURE:
            print("the first failing example's steps:\n  " + "\n  ".join(FIRST_FAILURE),
                  file=sys.__stderr__)
