"""One relay's moving parts: settings, database engine, tick function, listener, ticker, metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from sqlalchemy import Engine

from db.as_caller import CallerPool
from db.connection import make_engine
from db.connector import family_errors
from db.errors import DatabaseError
from tasks.broker.wakeup import TickRequest
from tasks.coordination.store_redis import connect
from tasks.exceptions import DatabaseUnavailable, RelayConfigError
from tasks.relay.due_watch import DueWatch
from tasks.relay.leader import LISTENING_KEY, Leadership
from tasks.relay.listener import Listener
from tasks.relay.metrics import RelayMetrics
from tasks.relay.ticker import Ticker
from tasks.settings import Settings, refuse_unsafe_settings

log = logging.getLogger(__name__)

TickFunction = Callable[[], TickRequest]


class Relay:
    """Everything the endpoints and background threads share."""

    def __init__(
        self,
        settings: Settings,
        *,
        local_only: bool = False,
        tick: TickFunction | None = None,
        group: int | None = None,
    ) -> None:
        token = settings.relay_token.get_secret_value() if settings.relay_token else ""
        if not token and not local_only:
            raise RelayConfigError(
                "RELAY_TOKEN is not set: set it, or run with --local-only to serve loopback only"
            )
        # A guessable signing secret makes anyone's token: refuse to serve with one.
        refuse_unsafe_settings(settings)
        self.settings = settings
        self.local_only = local_only
        #: None: no token required (local-only without a token).
        self.token: str | None = token or None
        if tick is None:
            from tasks.broker.wakeup import request_tick

            tick = request_tick
        self._tick = tick
        self.metrics = RelayMetrics(self.engine)
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        self._caller_pool: CallerPool | None = None
        #: /healthz's Redis clients by URL, kept so a probe reuses its connection.
        self._redis: dict[str, redis.Redis] = {}

        #: One of several workers (`regnotify relay --workers N`): the listener,
        #: the due watch and the ticker run in the worker holding the group's
        #: lock only (tasks/relay/leader.py). None: a single process runs them.
        self.leadership: Leadership | None = None
        #: For a standby's /healthz: whether the leader's LISTEN is in place.
        self.listening_elsewhere = False
        active: Callable[[], bool] | None = None
        listening_lock: tuple[int, int] | None = None
        if group is not None and settings.database_url:
            leadership = self.leadership = Leadership(settings.database_url, group)
            active = lambda: leadership.leading  # noqa: E731
            listening_lock = (LISTENING_KEY, group)
        self.listener: Listener | None = None
        self.due_watch = DueWatch(self.background_tick)
        if settings.relay_listen and settings.database_url:
            self.listener = Listener(
                settings.database_url, self.background_tick,
                backoff_max_s=settings.relay_reconnect_max_s,
                on_reconnect=self.metrics.listener_reconnects.inc,
                watch=self.due_watch.check, active=active, listening_lock=listening_lock,
            )
            listener = self.listener
            self.metrics.listener_connected.set_function(lambda: float(listener.connected))
        elif settings.relay_listen:
            log.warning("DATABASE_URL is not set: the relay does not LISTEN on notification_tick")
        self.ticker = Ticker(
            self.background_tick,
            interval_s=settings.relay_tick_interval_s,
            mode=settings.relay_self_tick,
            cron_check=self.cron_scheduled,
            active=active,
        )

    # ── Database ─────────────────────────────────────────────────────────────

    def engine(self) -> Engine:
        """The relay's own small engine (created on first use)."""
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    if not self.settings.database_url:
                        raise DatabaseUnavailable("DATABASE_URL is not set")
                    timeout = max(1, round(self.settings.relay_health_timeout_s))
                    self._engine = make_engine(
                        self.settings.database_url, pool_size=4,
                        connect_args={"connect_timeout": timeout,
                                      "application_name": "regnotify-relay"},
                    )
        return self._engine

    def caller_pool(self) -> CallerPool:
        """The API's and the page's connections (CallerPool), opened by the lifespan."""
        if self._caller_pool is None:
            with self._engine_lock:
                if self._caller_pool is None:
                    if not self.settings.database_url:
                        raise DatabaseUnavailable("DATABASE_URL is not set")
                    timeout = max(1, round(self.settings.relay_health_timeout_s))
                    self._caller_pool = CallerPool(
                        self.settings.database_url, size=self.settings.relay_db_pool_size,
                        connect_timeout_s=timeout)
        return self._caller_pool

    def redis_client(self, url: str, timeout_s: float) -> redis.Redis:
        """A kept client for `url` (its own connection pool; thread-safe)."""
        with self._engine_lock:
            client = self._redis.get(url)
            if client is None:
                client = self._redis[url] = connect(url, timeout_s)
            return client

    async def open_pools(self) -> None:
        """Open the caller pool in the server's event loop (the app's lifespan)."""
        if self.settings.database_url:
            await self.caller_pool().open()

    async def close_pools(self) -> None:
        if self._caller_pool is not None:
            await self._caller_pool.close()

    def cron_scheduled(self) -> bool | None:
        """Whether a pg_cron job ticks this database; None when we cannot tell."""
        from db.webhooks import cron_job_scheduled

        try:
            with family_errors(), self.engine().connect() as conn:
                return cron_job_scheduled(conn)
        except DatabaseError as exc:
            log.info("pg_cron check failed (%s)", type(exc).__name__)
            return None

    # ── Ticks ────────────────────────────────────────────────────────────────

    def request_tick(self, source: str) -> TickRequest:
        """Ask for a queue run (coalesced with one already waiting); raises if the broker fails."""
        try:
            result = self._tick()
        except Exception:
            self.metrics.ticks.labels(source, "error").inc()
            raise
        outcome = "coalesced" if result.coalesced else "enqueued"
        self.metrics.ticks.labels(source, outcome).inc()
        level = logging.DEBUG if source == "ticker" or result.coalesced else logging.INFO
        log.log(level, "tick from %s: %s%s", source, outcome,
                f" ({result.task_id})" if result.task_id else "")
        return result

    def background_tick(self, source: str) -> None:
        """A tick from the listener or the ticker: failures are logged, never raised."""
        try:
            self.request_tick(source)
        except Exception as exc:
            log.warning("tick from %s failed: %s", source, type(exc).__name__)

    # ── Lifecycle ────────────────────────────────────────────────────────────

    def start(self) -> None:
        """Start the listener and the ticker (and, with several workers, the election)."""
        if self.leadership is not None:
            self.leadership.start()
        if self.listener is not None:
            self.listener.start()
        self.ticker.start()

    def stop(self) -> None:
        """Stop the background threads and close database connections."""
        if self.listener is not None:
            self.listener.stop()
        self.ticker.stop()
        if self.leadership is not None:
            self.leadership.stop()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        with self._engine_lock:
            clients, self._redis = list(self._redis.values()), {}
        for client in clients:
            client.close()
