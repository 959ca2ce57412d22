"""Which worker of a `regnotify relay --workers N` runs the once-only work.

The LISTEN connection, the due watch, the own ticker and the hourly prune
must run once per relay, not once per worker: N listeners would ask for N
queue runs per NOTIFY (coalesced, but N round trips to the broker), N
tickers N ticks. The workers elect one by a session-level advisory lock,
`pg_try_advisory_lock(LEADER_KEY, group)`, where `group` is a number the
supervising process draws and hands to its workers: two relays (two
`regnotify relay` commands) on one database are two groups and each elects
its own, as each LISTENed before. The lock lives as long as the winner's
connection: a worker that dies (or loses the database) frees it, and a
standby takes over within STANDBY_RETRY_S.

The leader's LISTEN connection also holds LISTENING_KEY while LISTEN is in
place, so every worker's /healthz can say whether the relay's listener is
connected (tasks/relay/health.py), whichever worker answers.
"""

from __future__ import annotations

import logging
import os
import threading

import psycopg

from db.connection import libpq_url
from db.connector import family_errors
from db.errors import DatabaseError
from tasks.relay.background import BackgroundLoop

log = logging.getLogger(__name__)

#: The advisory lock's first key ("RNRL"): the relay's leader, by group.
LEADER_KEY = 0x524E524C
#: Held by the leader's LISTEN connection while it listens ("RNLN").
LISTENING_KEY = 0x524E4C4E
#: How often a standby tries for the lock, and the leader checks its connection.
STANDBY_RETRY_S = 1.0

#: Whether another session of this group holds LISTENING_KEY (its LISTEN is up).
LISTENING_ELSEWHERE_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND classid = %(key)s::bigint::oid AND objid = %(group)s::bigint::oid AND objsubid = 2"
    " AND pid <> pg_backend_pid())")


class Leadership(BackgroundLoop):
    """Holds (or waits for) this group's leader lock on a connection of its own."""

    thread_name = "relay-leader"

    def __init__(self, database_url: str, group: int, *,
                 retry_s: float = STANDBY_RETRY_S) -> None:
        super().__init__()
        self._url = libpq_url(database_url)
        self.group = group
        self.retry_s = retry_s
        self._leading = threading.Event()

    @property
    def leading(self) -> bool:
        """Whether this worker holds the lock right now."""
        return self._leading.is_set()

    def wait_leading(self, timeout: float) -> bool:
        return self._leading.wait(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with family_errors():
                    self._hold_while_possible()
            except DatabaseError as exc:
                if self._leading.is_set():
                    log.warning("relay leader: lost the database (%s); another worker may "
                                "take over", type(exc).__name__)
                self._leading.clear()
            if self._stop.wait(self.retry_s):
                break
        self._leading.clear()

    def _hold_while_possible(self) -> None:
        with psycopg.connect(self._url, autocommit=True, connect_timeout=5, keepalives=1,
                             keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
                             # The pid says which worker leads (pg_stat_activity).
                             application_name=f"regnotify-relay-leader-{os.getpid()}") as conn:
            while not self._stop.is_set():
                if not self._leading.is_set():
                    got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                                       (LEADER_KEY, self.group)).fetchone()
                    if got and got[0]:
                        log.info("relay leader: this worker runs the listener and the ticker")
                        self._leading.set()
                else:
                    conn.execute("SELECT 1")  # still connected, so still holding it
                if self._stop.wait(self.retry_s):
                    break
            self._leading.clear()
