"""A tick's publish on a broker that goes silent fails within seconds, and the next one after it
comes back is queued: no relay thread waits forever on a dead broker connection."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import suppress

import pytest
import redis
from celery import Celery

from tests.conftest import reset_process_state

pytestmark = pytest.mark.timeout(180)


class SilentLink:
    """A TCP forwarder to Redis that can go silent like a pulled cable: no FIN, no RST.

    While cut, bytes stay where they are and new connections are not
    accepted (the kernel's backlog completes their handshake, nothing answers);
    after the heal, everything held moves on, as TCP retransmissions would.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cut = threading.Event()
        self._closed = threading.Event()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _hold(self) -> None:
        while self.cut.is_set() and not self._closed.is_set():
            time.sleep(0.05)

    def _accept(self) -> None:
        while not self._closed.is_set():
            self._hold()
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with suppress(OSError):  # closed already by the fixture's teardown
            src.settimeout(0.1)
        while not self._closed.is_set():
            self._hold()
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            self._hold()
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            with suppress(OSError):
                s.close()

    def close(self) -> None:
        self._closed.set()
        for s in self._sockets:
            with suppress(OSError):
                s.close()


@pytest.fixture()
def link(redis_server) -> Iterator[SilentLink]:
    link = SilentLink(int(redis_server.url.rsplit(":", 1)[1].split("/")[0]))
    try:
        yield link
    finally:
        link.close()


@pytest.fixture()
def app_via_link(link, redis_server, clean_db, monkeypatch) -> Iterator[Celery]:
    """The process's app and tick coalescing, reaching the test Redis through `link`."""
    from tasks.broker import tick_publisher, wakeup
    from tasks.broker.app import app

    url = f"redis://127.0.0.1:{link.port}/0"
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    monkeypatch.setenv("DATABASE_URL", clean_db)
    reset_process_state()
    saved = app.conf.broker_url
    app.conf.broker_url = url
    wakeup.reset_client()
    tick_publisher.publisher.reset()
    redis.Redis.from_url(redis_server.url).flushdb()
    try:
        yield app
    finally:
        link.cut.clear()
        tick_publisher.publisher.reset()
        app.conf.broker_url = saved
        monkeypatch.undo()
        reset_process_state()
        wakeup.reset_client()


def _queued(redis_server) -> int:
    return int(redis.Redis.from_url(redis_server.url).llen("notifications"))


def _in_thread(fn) -> tuple[threading.Thread, dict[str, object]]:
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except Exception as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_a_tick_on_a_silent_broker_fails_and_the_next_after_the_heal_is_queued(
        app_via_link, link, redis_server):
    from tasks.broker.wakeup import PENDING_KEY, request_tick, run_started

    first = request_tick()
    assert first.task_id and _queued(redis_server) == 1
    run_started()

    link.cut.set()
    thread, box = _in_thread(request_tick)
    # Far beyond the bounded publish (timeouts and one retry, or the watchdog):
    # before the fix this thread waited on the dead socket for good.
    thread.join(90)
    assert not thread.is_alive(), "request_tick still waits on the silent broker"
    assert "error" in box, f"a tick on a silent broker returned {box.get('value')}"

    link.cut.clear()
    after = request_tick()
    assert after.task_id and not after.coalesced
    # The publish that gave up may still land once the link heals (TCP delivers
    # what its socket held): a spare run, which is harmless. The new one is there.
    assert _queued(redis_server) >= 2
    assert redis.Redis.from_url(redis_server.url).get(PENDING_KEY) is not None


def test_a_failed_publish_clears_the_marker_so_later_ticks_are_not_coalesced_away(
        app_via_link, link, redis_server, monkeypatch):
    # The marker lives in a Redis that stays up; only the broker goes silent.
    from tasks.broker import wakeup
    from tasks.broker.wakeup import PENDING_KEY, request_tick

    monkeypatch.setenv("COORDINATION_REDIS_URL", redis_server.url)
    reset_process_state()
    wakeup.reset_client()
    direct = redis.Redis.from_url(redis_server.url)

    link.cut.set()
    with pytest.raises(Exception):  # noqa: B017 - whichever way the bounded publish gave up
        request_tick()
    assert direct.get(PENDING_KEY) is None, "a tick that queued nothing left the marker set"

    link.cut.clear()
    assert not request_tick().coalesced
    assert _queued(redis_server) >= 1


def test_the_watchdog_abandons_a_publish_that_never_returns(app_via_link, redis_server):
    from tasks.broker.tick_publisher import PublishTimeout, TickPublisher
    from tasks.worker.queue_tick import process_notification_queue

    publisher = TickPublisher(deadline_s=0.5)
    release = threading.Event()
    try:
        with pytest.raises(PublishTimeout):
            publisher.publish(lambda producer: release.wait(120))
        assert publisher.abandoned == 1
        # A fresh connection serves the next publish while the stuck one still waits.
        result = publisher.publish(
            lambda producer: process_notification_queue.apply_async(producer=producer))
        assert result.id and _queued(redis_server) == 1
    finally:
        release.set()
        publisher.reset()
