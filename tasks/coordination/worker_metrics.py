"""Counters the workers keep in the coordination store so the relay's /metrics can show them.

Workers are separate processes (and machines): a Prometheus registry in each
would need scraping each. Counters in the coordination store (Redis hashes,
else rows of coordination_slots: tasks.coordination.stores chooses) survive
worker restarts and any relay can read them. Increments are summed in memory
and written once a second in one round trip, so a send costs a dict update,
not a store round trip. Failures here never touch a send; increments that
could not be written are kept for the next flush.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from tasks.coordination.store import StoreUnavailable
from tasks.coordination.stores import SharedStore

log = logging.getLogger(__name__)

#: Histogram bucket bounds for provider request latency, seconds.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: How often buffered increments are written to the store.
FLUSH_INTERVAL_S = 1.0
_PREFIX = "regnotify:metrics:"
#: Fields that hold seconds; every other field is a whole count.
_FLOAT_FIELDS = frozenset({"sum"})

_lock = threading.Lock()
#: The coordination store, chosen from the settings on first use.
store = SharedStore(timeout_s=1)
_warned = False
#: Counter group -> field -> increment not yet written.
_pending: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
_flusher: threading.Thread | None = None


def reset_client() -> None:
    """Forget the store and any unwritten increments (tests that change the broker)."""
    store.reset()
    with _lock:
        _pending.clear()


def _add(key: str, increments: dict[str, float]) -> None:
    global _flusher
    with _lock:
        fields = _pending[_PREFIX + key]
        for name, amount in increments.items():
            fields[name] += amount
        if _flusher is None or not _flusher.is_alive():
            _flusher = threading.Thread(target=_flush_forever, name="metrics-flush", daemon=True)
            _flusher.start()


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_INTERVAL_S)
        flush()


def flush() -> None:
    """Write the buffered increments to the store now (also run every second and at exit)."""
    global _warned
    with _lock:
        if not _pending:
            return
        batch = {key: dict(fields) for key, fields in _pending.items()}
        _pending.clear()
    try:
        store.get().counters_add({
            key: {name: amount if name in _FLOAT_FIELDS else int(amount)
                  for name, amount in fields.items()}
            for key, fields in batch.items()})
        _warned = False
    except StoreUnavailable as exc:
        # Keep what was not written; counters are small, a long outage only
        # grows the increments, not the number of keys.
        with _lock:
            for key, fields in batch.items():
                for name, amount in fields.items():
                    _pending[key][name] += amount
        if not _warned:
            log.warning("metrics not recorded yet: %s", type(exc.__cause__ or exc).__name__)
            _warned = True


atexit.register(flush)


def record_provider_call(provider: str, outcome: str, seconds: float) -> None:
    """One request to a provider: how long it took and how it ended (sent, retry, failed)."""
    latency: dict[str, float] = {"sum": seconds, "count": 1}
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            latency[f"le:{bound}"] = 1
    _add(f"latency:{provider}", latency)
    _add("calls", {f"{provider}:{outcome}": 1})


def record_retry(channel: str) -> None:
    """A send scheduled to be tried again."""
    _add("retries", {channel: 1})


def record_queue_run(reason: str) -> None:
    """One run of process_notification_queue."""
    _add("queue_runs", {reason: 1})


@dataclass(frozen=True)
class Latency:
    """Cumulative (non-decreasing) histogram of one provider's request latency."""

    provider: str
    buckets: list[tuple[float, int]]  # (upper bound, cumulative count)
    count: int
    sum: float


@dataclass(frozen=True)
class WorkerFigures:
    """Everything the workers recorded."""

    latency: list[Latency]
    calls: dict[str, int]
    retries: dict[str, int]
    queue_runs: dict[str, int]


def read() -> WorkerFigures | None:
    """The recorded figures, or None when the store does not answer."""
    # A relay that also runs tasks (eager tests, one-process setups) shows its own too.
    flush()
    shared = store.get()
    try:
        latency: list[Latency] = []
        for provider in ("twilio", "resend", "console"):
            raw = shared.counters_read(f"{_PREFIX}latency:{provider}")
            if not raw:
                continue
            # Each bucket was incremented for every bound >= the observation,
            # so the counts are already cumulative.
            buckets = [(b, int(raw.get(f"le:{b}", 0))) for b in LATENCY_BUCKETS]
            latency.append(Latency(provider, buckets, int(raw.get("count", 0)),
                                   float(raw.get("sum", 0.0))))

        def _ints(key: str) -> dict[str, int]:
            return {k: int(v) for k, v in shared.counters_read(_PREFIX + key).items()}

        return WorkerFigures(latency, _ints("calls"), _ints("retries"), _ints("queue_runs"))
    except StoreUnavailable:
        return None
