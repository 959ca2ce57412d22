"""The relay's own ticker, for databases where pg_cron does not tick (an embedded PostgreSQL).

It also prunes (retention, migration 11) at most once an hour where pg_cron
has no prune job, in a thread of its own so a long first prune never delays
a tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from tasks.relay.background import BackgroundLoop

log = logging.getLogger(__name__)

#: How often "auto" asks the database again whether a pg_cron job exists, so
#: installing (or dropping) pg_cron takes effect without restarting the relay.
CRON_RECHECK_S = 60.0

TickerMode = Literal["auto", "on", "off"]

#: How often the relay prunes where pg_cron does not (pg_cron's job: every 5 min).
PRUNE_EVERY_S = 3600.0
#: The first prune waits this long after start, so a relay that restarts
#: often (`regnotify up` in development) still prunes, but not while starting.
PRUNE_FIRST_S = 60.0


def prune_unless_cron() -> None:
    """Prune in batches with the process's database, unless pg_cron runs the prune job."""
    from db.prune import cron_prunes, prune
    from tasks.database import autocommit_engine, engine
    from tasks.settings import get_settings

    if not get_settings().database_url:
        return
    with autocommit_engine().connect() as conn:
        if cron_prunes(conn):
            log.debug("pg_cron job regnotify-prune prunes: the relay does not")
            return
    result = prune(engine())
    if result.total:
        log.info("pruned %d row(s) in %d batch(es): %s", result.total, result.batches,
                 ", ".join(f"{k} {n}" for k, n in result.deleted.items() if n))


class Ticker(BackgroundLoop):
    """Calls `on_tick("ticker")` every `interval_s` seconds while it should.

    mode "on" always ticks; "auto" ticks unless `cron_check()` says a pg_cron
    job does it (None from the check means "cannot tell", and we tick: an
    extra tick is coalesced and costs one cheap run, a missing one delays
    every message); "off" never starts.
    """

    thread_name = "relay-ticker"

    def __init__(
        self,
        on_tick: Callable[[str], object],
        *,
        interval_s: float,
        mode: TickerMode = "auto",
        cron_check: Callable[[], bool | None] | None = None,
        recheck_s: float = CRON_RECHECK_S,
        prune: Callable[[], object] | None = prune_unless_cron,
        prune_every_s: float = PRUNE_EVERY_S,
        prune_first_s: float = PRUNE_FIRST_S,
        active: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__()
        self._on_tick = on_tick
        self.interval_s = interval_s
        self.mode: TickerMode = mode
        self._cron_check = cron_check
        self.recheck_s = recheck_s
        self.cron_scheduled: bool | None = None
        self.ticks = 0
        self._decided = False
        self._active = threading.Event()
        self._prune = prune
        self.prune_every_s = prune_every_s
        self.prune_first_s = prune_first_s
        self.prunes = 0
        self._prune_thread: threading.Thread | None = None
        #: With several workers: tick and prune only while this returns True
        #: (the elected worker, tasks/relay/leader.py); the others still decide,
        #: so each /healthz says what the relay does.
        self._leading = active or (lambda: True)

    @property
    def active(self) -> bool:
        """Whether the ticker is ticking (as of its last decision)."""
        return self._active.is_set()

    def state(self) -> str:
        """For /healthz: 'own' when we tick, 'cron' when pg_cron does, 'off', or 'starting'."""
        if self.mode == "off":
            return "off"
        if self._active.is_set():
            return "own"
        if self.cron_scheduled:
            return "cron"
        return "starting"

    def _should_start(self) -> bool:
        return self.mode != "off"

    def wait_active(self, timeout: float) -> bool:
        """Block until the ticker has decided to tick (tests)."""
        return self._active.wait(timeout)

    def _decide(self) -> bool:
        if self.mode == "on":
            return True
        scheduled = self._cron_check() if self._cron_check is not None else None
        if scheduled != self.cron_scheduled or not self._decided:
            if scheduled is True:
                log.info("pg_cron job process-notification-queue found: the relay's own ticker "
                         "stays idle")
            elif scheduled is False:
                log.info("no pg_cron job process-notification-queue: the relay ticks every %.1fs",
                         self.interval_s)
            else:
                log.warning("cannot tell whether pg_cron ticks; the relay ticks every %.1fs",
                            self.interval_s)
        self.cron_scheduled = scheduled
        self._decided = True
        return scheduled is not True

    def _maybe_prune(self, now: float, next_prune: float) -> float:
        """Start a prune in its own thread when one is due and none is running."""
        if self._prune is None or now < next_prune:
            return next_prune
        if self._prune_thread is not None and self._prune_thread.is_alive():
            return next_prune
        self._prune_thread = threading.Thread(target=self._prune_once, name="relay-prune",
                                              daemon=True)
        self._prune_thread.start()
        return now + self.prune_every_s

    def _prune_once(self) -> None:
        assert self._prune is not None
        self.prunes += 1
        try:
            self._prune()
        except Exception as exc:
            log.warning("prune failed (%s); next try in %.0fs", type(exc).__name__,
                        self.prune_every_s)

    def _run(self) -> None:
        next_check = 0.0
        next_prune = time.monotonic() + self.prune_first_s
        ticking = False
        while not self._stop.is_set():
            now = time.monotonic()
            if self._leading():
                next_prune = self._maybe_prune(now, next_prune)
            if now >= next_check:
                ticking = self._decide()
                next_check = now + self.recheck_s
                if ticking:
                    self._active.set()
                else:
                    self._active.clear()
            if ticking and self._leading():
                self.ticks += 1
                try:
                    self._on_tick("ticker")
                except Exception as exc:
                    log.warning("own tick failed (%s)", type(exc).__name__)
            if self._stop.wait(self.interval_s):
                break
        self._active.clear()
