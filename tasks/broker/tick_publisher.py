"""Publishing a queue run from the relay without ever waiting forever on a dead broker.

kombu's Redis transport waits on its socket without a timeout by default.
When the broker's host vanishes without closing the connection (a pulled
cable, a failover, a NAT that forgot us) a publish caught by it waits
forever; in the relay that was the ticker's only thread, or a tick from the
LISTEN connection, and no tick reached the broker again after it came back.

So the relay's ticks go through a connection of their own, not Celery's
shared producer pool:

- socket and connect timeouts, TCP keepalive and redis-py's health check on
  that connection (Redis), a connect timeout (RabbitMQ), so a dead
  connection fails instead of hanging;
- a bounded publish retry (`RETRY_POLICY`), which reconnects between tries;
- a watchdog: each publish runs in a short-lived thread that the caller waits
  on for at most `deadline_s`; a publish that overruns it (blocked somewhere
  the timeouts do not reach) is abandoned with its connection, and the next
  tick opens a fresh one.

Workers keep kombu's defaults: these timeouts live on this connection only.
(A process-wide socket timeout was tried: the relay recovered, but a
worker's publish during the outage failed inside kombu's channel and its
delivery waited for the sweep.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kombu import Connection

from tasks.broker.app import app

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A Redis command or connect on the tick connection gives up after this long.
SOCKET_TIMEOUT_S = 3.0
#: redis-py PINGs a connection idle for longer than this before using it.
HEALTH_CHECK_INTERVAL_S = 10
#: Tries after the first: each reconnects first (kombu's Connection.ensure).
RETRY_POLICY: dict[str, float] = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}
#: The watchdog: longer than the worst bounded publish (two tries of a
#: connect and a command timing out), so it only fires on a publish that the
#: timeouts did not bound.
DEADLINE_S = 15.0


class PublishTimeout(TimeoutError):
    """A publish overran the watchdog's deadline; its connection was abandoned."""


def transport_options(url: str) -> dict[str, Any]:
    """The options that make a connection to `url` fail instead of hang."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return {
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": SOCKET_TIMEOUT_S,
            "socket_keepalive": True,
            "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        }
    # py-amqp: heartbeats are not processed by a publisher that never
    # drains events; the connect timeout and the watchdog bound it.
    return {"connect_timeout": SOCKET_TIMEOUT_S}


@dataclass
class _Line:
    """One connection to the broker, its producer, and the lock that serialises its use."""

    url: str
    connection: Connection
    lock: threading.Lock = field(default_factory=threading.Lock)
    producer: Any = None


class TickPublisher:
    """Runs publishes on a dedicated broker connection, each bounded by a watchdog."""

    def __init__(self, deadline_s: float = DEADLINE_S) -> None:
        self.deadline_s = deadline_s
        self._lock = threading.Lock()
        self._line: _Line | None = None
        #: Publishes abandoned by the watchdog (each left its connection behind).
        self.abandoned = 0

    def _current(self) -> _Line:
        url = app.conf.broker_write_url or app.conf.broker_url
        with self._lock:
            line = self._line
            # A test that points the app at another broker gets a connection to it.
            if line is None or line.url != url:
                if line is not None:
                    _close_quietly(line)
                connection = app.connection_for_write(transport_options=transport_options(url))
                line = _Line(url=url, connection=connection)
                self._line = line
            return line

    def _abandon(self, line: _Line, *, overran: bool = False) -> None:
        with self._lock:
            if self._line is line:
                self._line = None
                self.abandoned += int(overran)
        # Closing may block on the same dead socket: not in the caller's thread.
        threading.Thread(target=_close_quietly, args=(line,), name="tick-publish-close",
                         daemon=True).start()

    def reset(self) -> None:
        """Drop the connection; the next publish opens one (tests)."""
        with self._lock:
            line, self._line = self._line, None
        if line is not None:
            _close_quietly(line)

    def publish(self, send: Callable[[Any], T]) -> T:
        """Call `send(producer)` on the tick connection; raise rather than wait past the deadline.

        Errors from `send` are raised as they are, and the connection is
        dropped with them: the next publish starts from a fresh one.
        """
        line = self._current()
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                with line.lock:
                    if line.producer is None:
                        line.producer = line.connection.Producer()
                    outcome["value"] = send(line.producer)
            except BaseException as exc:  # handed to the caller below
                outcome["error"] = exc
            finally:
                done.set()

        threading.Thread(target=run, name="tick-publish", daemon=True).start()
        if not done.wait(self.deadline_s):
            self._abandon(line, overran=True)
            log.warning("a tick's publish did not finish within %.0fs: its broker connection "
                        "is abandoned, the next tick opens a new one", self.deadline_s)
            raise PublishTimeout(f"publish took longer than {self.deadline_s:.0f}s")
        if "error" in outcome:
            self._abandon(line)
            raise outcome["error"]
        return outcome["value"]


def _close_quietly(line: _Line) -> None:
    try:
        line.connection.release()
    except Exception as exc:  # a dead connection may fail to close; it is dropped anyway
        log.debug("closing an abandoned broker connection failed: %s", type(exc).__name__)


publisher = TickPublisher()
