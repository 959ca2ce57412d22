"""How big each scenario of `regnotify bench` is: the full, quick and smoke plans.

Its own module so that a scenario run alone (`python -m bench.trigger`) takes
its defaults from the quick plan without importing the runner, which imports
every scenario.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.pipeline import WorkerShape


@dataclass(frozen=True)
class Plan:
    """How big each scenario is; `full`, `quick` and `smoke` are the three sizes."""

    mode: str
    trigger_rows: int
    trigger_rounds: int
    trigger_seconds: float
    claim_rows: int
    claim_repeats: int
    bare_tasks: int
    drain_notifications: int
    rss_sends: int
    rss_first: int
    latency_notifications: int
    sequential_sends: int
    due_messages: int
    due_window_s: float
    due_spread_s: float
    backlog_emails: int = 1_000
    backlog_texts: int = 300
    single_emails: int = 20
    shape: WorkerShape = field(default_factory=lambda: WorkerShape(2, 32))
    #: 0: the tick's CLAIM_BATCH_SIZE.
    claim_batch: int = 0
    claimers: int = 2
    trigger_clients: int = 4
    latency_s: float = 0.2

    @property
    def rss_notifications(self) -> int:
        """Notifications after the drain that bring the workers to `rss_sends` sends."""
        return max(0, self.rss_sends - 2 * self.drain_notifications) // 2

    def scaled_down(self) -> list[str]:
        """What this plan does smaller than the issue asks, for the output."""
        full = PLANS["full"]
        notes = []
        for name, label in (
            ("trigger_rows", "trigger UPDATE rows"),
            ("claim_rows", "claimed queue rows"),
            ("drain_notifications", "drained notifications"),
            ("rss_sends", "sends before the final RSS reading"),
            ("rss_first", "sends before the first RSS reading"),
            ("latency_notifications", "200 ms notifications"),
            ("due_messages", "due-to-send messages"),
            ("backlog_emails", "backlog e-mails"),
            ("backlog_texts", "backlog texts"),
        ):
            if getattr(self, name) != getattr(full, name):
                notes.append(f"{label} {getattr(self, name):,} (full: {getattr(full, name):,})")
        if (self.trigger_rounds, self.trigger_seconds) != (full.trigger_rounds,
                                                           full.trigger_seconds):
            notes.append(f"trigger rounds {self.trigger_rounds} x {self.trigger_seconds:g} s"
                         f" (full: {full.trigger_rounds} x {full.trigger_seconds:g} s)")
        return notes


PLANS: dict[str, Plan] = {
    "full": Plan(
        mode="full", trigger_rows=100_000, trigger_rounds=8, trigger_seconds=4,
        claim_rows=100_000, claim_repeats=3, bare_tasks=20_000, drain_notifications=10_000,
        rss_sends=100_000, rss_first=1_000, latency_notifications=3_000, sequential_sends=60,
        due_messages=200, due_window_s=2.0, due_spread_s=20.0,
    ),
    "quick": Plan(
        mode="quick", trigger_rows=100_000, trigger_rounds=4, trigger_seconds=2,
        claim_rows=100_000, claim_repeats=1, bare_tasks=3_000, drain_notifications=1_500,
        rss_sends=6_000, rss_first=1_000, latency_notifications=800, sequential_sends=20,
        due_messages=60, due_window_s=1.0, due_spread_s=6.0,
    ),
    "smoke": Plan(
        mode="smoke", trigger_rows=5_000, trigger_rounds=1, trigger_seconds=1,
        claim_rows=5_000, claim_repeats=1, bare_tasks=400, drain_notifications=150,
        rss_sends=500, rss_first=100, latency_notifications=80, sequential_sends=4,
        due_messages=10, due_window_s=0.5, due_spread_s=2.0,
        backlog_emails=200, backlog_texts=20, single_emails=4,
        shape=WorkerShape(1, 8),
    ),
}
