"""Provider rate limits shared by every worker (Celery's rate_limit is per worker).

A GCRA without burst: each caller reserves the next free slot, one every
1/rate seconds, so no window of one second ever holds more than `rate`
sends. A slot may lie in the future: the caller waits for it (sleeping, or
re-published for that time), which is why waiting is never a failed attempt.

Slots are when calls should leave; the provider counts when they arrive. A
departure gate closes the gap: a call holds a place in a shared log from the
moment it leaves until its answer is back, and is then logged at that
moment. The provider saw the call between the two, so any calls it saw
within one second are all in our log within one second of the last of them
to leave: however late a busy thread or the network made them, no second at
the provider holds more than the limit.

The slots and the gate are primitives of the coordination store
(tasks.coordination.store): the limiter decides, over that interface, for
whichever engine tasks.coordination.stores chose. If the store does not
answer, a store of this process keeps it polite until it does.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Connection

from tasks.coordination.store import (
    ANY_WAIT_S,
    CoordinationStore,
    Gate,
    Spacing,
    StoreUnavailable,
)
from tasks.coordination.stores import choose_store, fallback_store

log = logging.getLogger(__name__)

__all__ = ["ANY_WAIT_S", "GATE_WINDOW_S", "HOLD_PAST_TIMEOUT_S", "SLOT_MARGIN", "RateLimiter",
           "Reservation"]

#: Slots are spaced this much wider than 1/rate: the departure gate's
#: window and a quick answer's time, which a call also holds its place for,
#: so in steady flow the gate seldom has to hold a call back.
SLOT_MARGIN = 1.08
#: The departure gate's window. A second is enough, because a call is logged
#: when its answer is back, after the provider counted it; the rest allows
#: for clocks that tick at slightly different rates.
GATE_WINDOW_S = 1.02
#: How long past the provider timeout a call out holds its place if its
#: worker dies before the answer: the gate frees it then.
HOLD_PAST_TIMEOUT_S = 5.0

_T = TypeVar("_T")


@dataclass(frozen=True)
class Reservation:
    """`granted`: the slot is `wait_s` away; send then. Otherwise none within reach.

    `departed`: the gate already admitted a call under this token (see
    RateLimiter.reserve_and_depart); pass it to `call`, which then does not
    ask the gate again and logs the answer under it.
    """

    granted: bool
    wait_s: float
    departed: str | None = None


class RateLimiter:
    """At most `rate_per_s` sends in any one second, across all processes.

    `redis_url`: the coordination Redis; None keeps the slots in PostgreSQL
    (`use_database=False` keeps them in this process only, for tests).
    `store`: a store to use instead of choosing one from those two.
    `call_timeout_s`: the longest a provider call can be out (its connect and
    read timeouts together: tasks.sending.bounds.call_bound_s).
    """

    def __init__(self, name: str, rate_per_s: float, *, redis_url: str | None,
                 burst: int = 1, use_database: bool = True, call_timeout_s: float = 10.0,
                 store: CoordinationStore | None = None):
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.name = name
        self.hold_s = call_timeout_s + HOLD_PAST_TIMEOUT_S
        self.rate_per_s = rate_per_s
        self.interval = SLOT_MARGIN / rate_per_s
        self.tolerance = self.interval * max(0, burst - 1)
        self.limit_per_window = max(1, int(rate_per_s))
        self._spacing = Spacing(self.interval, self.tolerance)
        self._gate = Gate(self.limit_per_window, GATE_WINDOW_S, self.hold_s)
        self._key = f"regnotify:ratelimit:{name}"
        self._gate_key = f"regnotify:ratelimit:{name}:sent"
        self._store = store or choose_store(redis_url=redis_url, database=use_database)
        self._fallback = fallback_store()
        self._warned = False

    @property
    def backend(self) -> str:
        """Where the slots are kept: redis, postgresql or process (the store's kind)."""
        return self._store.kind

    def _ask(self, step: Callable[[CoordinationStore], _T]) -> _T:
        """`step` on the shared store; on this process's while that does not answer."""
        try:
            answer = step(self._store)
        except StoreUnavailable as exc:
            self._warn(exc)
            return step(self._fallback)
        self._warned = False
        return answer

    def reserve(self, max_wait_s: float, *, conn: Connection | None = None) -> Reservation:
        """Reserve a slot no more than `max_wait_s` away (float('inf'): any).

        `conn`: an autocommit connection the caller holds, used by a store
        in the database instead of a second one from the pool.
        """
        max_wait = min(max_wait_s, ANY_WAIT_S)
        granted, wait = self._ask(
            lambda store: store.slot_reserve(self._key, self._spacing, max_wait, conn=conn))
        return Reservation(granted, wait)

    def reserve_and_depart(self, *, conn: Connection | None = None) -> Reservation:
        """Reserve the next slot and, when it is now, pass the gate too.

        The caller must then make the call with `call(departed=...)` right
        away: from here the call holds its place in the gate's log. A store
        may answer both in one round trip (Redis does).
        """
        token = uuid.uuid4().hex
        granted, wait, departed = self._ask(lambda store: store.reserve_and_depart(
            self._key, self._spacing, self._gate_key, self._gate, token, conn=conn))
        return Reservation(granted, wait, token if departed else None)

    def defer(self, seconds: float) -> None:
        """The provider said 'not before `seconds`': no slot for anyone sooner."""
        self._fallback.slot_defer(self._key, seconds)
        try:
            self._store.slot_defer(self._key, seconds)
        except StoreUnavailable as exc:
            self._warn(exc)

    @contextmanager
    def call(self, departed: str | None = None, *,
             conn: Connection | None = None) -> Iterator[None]:
        """Around one provider call: wait at the gate, hold a place while out, log the answer.

        The slots already space the calls; the gate catches the ones that
        leave late (a busy thread, a slow render) and would crowd a second.
        `departed`: the token the gate admitted in `reserve_and_depart`.
        `conn`: the caller's autocommit connection, for a store in the database.
        """
        token = departed or uuid.uuid4().hex
        while departed is None:
            wait = self._try_depart(token, conn)
            if wait <= 0:
                break
            time.sleep(min(wait, 1.0) + 0.001)
        try:
            yield
        finally:
            self._landed(token, conn)

    def _try_depart(self, token: str, conn: Connection | None = None) -> float:
        return self._ask(
            lambda store: store.gate_depart(self._gate_key, self._gate, token, conn=conn))

    def _landed(self, token: str, conn: Connection | None = None) -> None:
        # Both are told: the call was admitted by whichever answered, and
        # each ignores a token it does not hold.
        self._fallback.gate_landed(self._gate_key, token)
        try:
            self._store.gate_landed(self._gate_key, token, conn=conn)
        except StoreUnavailable as exc:
            # Its place is freed when the hold runs out; the call is done.
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            log.warning("rate limiter %s: %s unavailable (%s); limiting per process",
                        self.name, self.backend, type(exc.__cause__ or exc).__name__)
            self._warned = True
