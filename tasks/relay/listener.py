"""LISTEN notification_tick: one tick per NOTIFY, reconnecting whenever the connection drops.

A thread with a blocking psycopg connection rather than an asyncio task:
the tick callback talks to Redis synchronously, and a thread keeps a slow
broker from stalling the event loop that serves HTTP.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable

import psycopg

from db.connection import libpq_url
from db.connector import family_errors
from db.errors import DatabaseError, DatabaseNotMigrated, DatabaseUnavailable
from tasks.relay.background import BackgroundLoop

log = logging.getLogger(__name__)

CHANNEL = "notification_tick"


class Listener(BackgroundLoop):
    """Keeps one autocommit connection LISTENing and calls `on_tick(source)` for each NOTIFY.

    `source` is "notify" for a NOTIFY, and "listen" right after each
    successful LISTEN: a NOTIFY sent while nobody listened is lost for good,
    so every (re)connect asks for one catch-up run.
    """

    thread_name = "relay-listener"

    def __init__(
        self,
        database_url: str,
        on_tick: Callable[[str], object],
        *,
        channel: str = CHANNEL,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 15.0,
        poll_s: float = 1.0,
        idle_probe_s: float = 30.0,
        on_reconnect: Callable[[], object] | None = None,
        watch: Callable[[psycopg.Connection], object] | None = None,
        watch_every_s: float = 1.0,
        active: Callable[[], bool] | None = None,
        listening_lock: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self._url = libpq_url(database_url)
        self._on_tick = on_tick
        self._on_reconnect = on_reconnect
        #: Run on the LISTEN connection every `watch_every_s` (the due watch).
        self._watch = watch
        self.watch_every_s = watch_every_s
        #: With several workers: listen only while this returns True (the
        #: elected worker, tasks/relay/leader.py), and hold `listening_lock`
        #: (an advisory lock's two keys) while listening, for the others' /healthz.
        self._active = active
        self._listening_lock = listening_lock
        self._watch_failing = False
        self.channel = channel
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.poll_s = poll_s
        self.idle_probe_s = idle_probe_s
        self._connected = threading.Event()
        self.connects = 0
        self.notifications = 0
        #: The latest NOTIFY payloads, newest last (diagnostics and tests).
        self.recent_payloads: deque[str] = deque(maxlen=50)
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        """Whether the LISTEN is in place right now."""
        return self._connected.is_set()

    @property
    def reconnects(self) -> int:
        """Successful LISTENs after the first one."""
        return max(self.connects - 1, 0)

    def wait_connected(self, timeout: float) -> bool:
        """Block until the LISTEN is in place (for startup and tests)."""
        return self._connected.wait(timeout)

    def _run(self) -> None:
        backoff = self.backoff_initial_s
        while not self._stop.is_set():
            if not self._is_active():
                self._connected.clear()
                if self._stop.wait(min(self.poll_s, 0.5)):
                    break
                continue
            try:
                with family_errors():
                    self._listen_until_lost()
                backoff = self.backoff_initial_s
            except DatabaseError as exc:
                self._connected.clear()
                self.last_error = type(exc).__name__
                # Full jitter so several relays do not reconnect in lockstep.
                delay = random.uniform(backoff / 2, backoff)
                log.warning(
                    "LISTEN %s: connection lost or refused (%s: %s); reconnecting in %.1fs",
                    self.channel, type(exc).__name__, _first_line(exc.detail), delay,
                )
                if self._stop.wait(delay):
                    break
                # A server that just came back often refuses a second time;
                # doubling keeps us polite when it stays down for long.
                backoff = min(backoff * 2, self.backoff_max_s)
            except Exception:
                # A bug must not silently end LISTENing for the process's life.
                self._connected.clear()
                log.exception("LISTEN %s: unexpected error; restarting the loop", self.channel)
                if self._stop.wait(self.backoff_max_s):
                    break
        self._connected.clear()

    def _listen_until_lost(self) -> None:
        # Keepalives notice a peer that vanished without closing the socket
        # (a crashed host, a dropped NAT entry); the idle probe backs them up.
        with psycopg.connect(
            self._url, autocommit=True, connect_timeout=5,
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
            application_name="regnotify-relay-listener",
        ) as conn:
            conn.execute(f"LISTEN {self.channel}")
            if self._listening_lock is not None:
                conn.execute("SELECT pg_advisory_lock(%s, %s)", self._listening_lock)
            self.connects += 1
            self._connected.set()
            self.last_error = None
            if self.connects == 1:
                log.info("LISTEN %s: listening", self.channel)
            else:
                log.warning("LISTEN %s: reconnected and listening again (reconnect #%d)",
                            self.channel, self.connects - 1)
                if self._on_reconnect is not None:
                    self._on_reconnect()
            self._tick("listen")
            last_activity = time.monotonic()
            next_watch = last_activity + self.watch_every_s
            while not self._stop.is_set() and self._is_active():
                got_any = False
                for notify in conn.notifies(timeout=self.poll_s):
                    got_any = True
                    self.notifications += 1
                    self.recent_payloads.append(notify.payload)
                    self._tick("notify")
                    if self._stop.is_set():
                        break
                now = time.monotonic()
                if self._watch is not None and now >= next_watch:
                    self._run_watch(conn)
                    next_watch = now + self.watch_every_s
                    last_activity = now
                if got_any:
                    last_activity = now
                elif now - last_activity >= self.idle_probe_s:
                    conn.execute("SELECT 1")
                    last_activity = now
        self._connected.clear()

    def _is_active(self) -> bool:
        return self._active is None or self._active()

    def _run_watch(self, conn: psycopg.Connection) -> None:
        assert self._watch is not None
        try:
            with family_errors():
                self._watch(conn)
        except DatabaseError as exc:
            gone = (isinstance(exc, DatabaseUnavailable)
                    and not isinstance(exc, DatabaseNotMigrated))
            if gone:
                raise  # the connection is gone: reconnect like any other loss
            # A missing table (not migrated yet) must not end the LISTEN;
            # said once, not every second.
            if not self._watch_failing:
                log.warning("due watch failed (%s); the next tick still arms wake-ups",
                            type(exc).__name__)
            self._watch_failing = True
        else:
            self._watch_failing = False

    def _tick(self, source: str) -> None:
        try:
            self._on_tick(source)
        except Exception as exc:
            # The broker being down is not the database being down: keep the
            # LISTEN, the next NOTIFY (or the cron safety net) tries again.
            log.warning("LISTEN %s: tick failed (%s)", self.channel, type(exc).__name__)


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""
