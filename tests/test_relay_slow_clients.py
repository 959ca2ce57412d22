"""The served relay against slow, silent and vanishing clients, over real sockets.

A request's headers and its body each have a deadline (RELAY_HEADER_TIMEOUT_S,
RELAY_BODY_TIMEOUT_S; 2 s here): past it the relay answers 408 and closes,
however the client dribbles its bytes, and meanwhile it keeps answering
everyone else.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tasks.local.embedded_postgres import free_port
from tests.relay_helpers import RELAY_TOKEN, flush_broker, wait_for
from tests.test_relay_process import RelayProcess, _assert_clean_exit, _env

pytest_plugins = ["tests.relay_helpers"]

DEADLINE_S = 2.0
#: What a cut may take beyond its deadline on a busy, shared machine.
SLACK_S = 4.0


class Relay:
    """A running relay: its address and its log."""

    def __init__(self, process: RelayProcess, port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture()
def relay(tmp_path: Path, clean_db: str, redis_server) -> Iterator[Relay]:
    port = free_port()
    env = _env(clean_db, redis_server.url, RELAY_HEADER_TIMEOUT_S=str(DEADLINE_S),
               RELAY_BODY_TIMEOUT_S=str(DEADLINE_S))
    process = RelayProcess(["--host", "127.0.0.1", "--port", str(port)], env,
                           tmp_path / "relay.log")
    served = Relay(process, port)
    try:
        process.wait_healthy(served.url)
        yield served
    finally:
        status = process.stop()
        flush_broker(redis_server.url)
    _assert_clean_exit(status, process.log())


class SlowClient:
    """A raw connection that sends `head` at once, then `tail` one byte per second."""

    def __init__(self, port: int, head: bytes, tail: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.started = time.monotonic()
        self.sock.sendall(head)
        self._stop = threading.Event()
        self.sent_after_head = 0
        self._thread = threading.Thread(target=self._trickle, args=(tail,), daemon=True)
        self._thread.start()

    def _trickle(self, tail: bytes) -> None:
        for byte in tail:
            if self._stop.wait(1.0):
                return
            try:
                self.sock.sendall(bytes([byte]))
            except OSError:  # the relay hung up: what we are waiting for
                return
            self.sent_after_head += 1

    def answer(self) -> tuple[bytes, float]:
        """Everything the relay sent until it closed, and how long after connecting it closed."""
        data = b""
        try:
            while chunk := self.sock.recv(4096):
                data += chunk
        except ConnectionResetError:
            pass
        return data, time.monotonic() - self.started

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(5)


def slow_body(port: int, path: str, headers: str = "") -> SlowClient:
    head = (f"POST {path} HTTP/1.1\r\nHost: relay.test\r\n{headers}"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 100\r\n\r\n").encode()
    return SlowClient(port, head, b"x" * 100)


def slow_headers(port: int) -> SlowClient:
    return SlowClient(port, b"POST /tick HTTP/1.1\r\n",
                      b"Host: relay.test\r\nX-Padding: " + b"a" * 100 + b"\r\n\r\n")


def _status_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


@pytest.mark.parametrize(("path", "headers"), [
    ("/webhooks/twilio/status", ""),
    ("/tick", f"Authorization: Bearer {RELAY_TOKEN}\r\n"),
])
def test_a_body_trickling_in_gets_408_within_the_deadline(relay, path, headers):
    client = slow_body(relay.port, path, headers)
    try:
        data, elapsed = client.answer()
    finally:
        client.close()
    assert _status_line(data) == "HTTP/1.1 408 Request Timeout", data
    assert b"connection: close" in data.lower()
    assert DEADLINE_S - 0.5 <= elapsed <= DEADLINE_S + SLACK_S, elapsed
    # It really was trickling, and was cut long before the 100 bytes were in.
    assert 0 < client.sent_after_head < 50
    assert f"POST {path}" in relay.process.log() and "answered 408" in relay.process.log()


def test_a_refused_request_is_answered_at_once_and_its_trickle_cut_off(relay):
    # 401 before the body is read: the connection closes with it, so the
    # client cannot hold it open by trickling the rest.
    client = slow_body(relay.port, "/tick", "Authorization: Bearer wrong\r\n")
    try:
        data, elapsed = client.answer()
    finally:
        client.close()
    assert _status_line(data) == "HTTP/1.1 401 Unauthorized", data
    assert b"connection: close" in data.lower()
    assert elapsed < DEADLINE_S, elapsed


def test_headers_trickling_in_are_cut_within_the_deadline(relay):
    client = slow_headers(relay.port)
    try:
        data, elapsed = client.answer()
    finally:
        client.close()
    assert _status_line(data) == "HTTP/1.1 408 Request Timeout", data
    assert DEADLINE_S - 0.5 <= elapsed <= DEADLINE_S + SLACK_S, elapsed
    assert 0 < client.sent_after_head < 50


def test_a_silent_connection_is_closed_within_the_deadline(relay):
    client = SlowClient(relay.port, b"", b"")
    try:
        data, elapsed = client.answer()
    finally:
        client.close()
    assert _status_line(data) == "HTTP/1.1 408 Request Timeout", data
    assert elapsed <= DEADLINE_S + SLACK_S, elapsed


def test_slow_clients_do_not_hold_up_anyone_else(relay):
    clients = [slow_body(relay.port, "/webhooks/twilio/status") for _ in range(6)]
    clients += [slow_headers(relay.port) for _ in range(6)]
    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            answers = [pool.submit(c.answer) for c in clients]
            # While every slow client holds a connection, others are served at once.
            with httpx.Client(base_url=relay.url, timeout=5) as normal:
                for _ in range(5):
                    started = time.monotonic()
                    assert normal.get("/healthz").status_code == 200
                    assert time.monotonic() - started < DEADLINE_S
                    time.sleep(0.2)
            assert all(not a.done() for a in answers[:1])  # still trickling meanwhile
            results = [a.result(timeout=DEADLINE_S + SLACK_S + 5) for a in answers]
    finally:
        for c in clients:
            c.close()
    for data, elapsed in results:
        assert _status_line(data) == "HTTP/1.1 408 Request Timeout", data
        assert elapsed <= DEADLINE_S + SLACK_S, elapsed


def test_a_client_hanging_up_mid_body_is_one_log_line(relay):
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
        sock.sendall(b"POST /webhooks/twilio/status HTTP/1.1\r\nHost: relay.test\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 100\r\n\r\nMessageSid=SM")
        time.sleep(0.3)
    wait_for(lambda: "client disconnected" in relay.process.log(), timeout=DEADLINE_S + 2)
    time.sleep(0.3)
    log = relay.process.log()
    lines = [line for line in log.splitlines() if "disconnected" in line]
    assert len(lines) == 1 and "POST /webhooks/twilio/status" in lines[0], log
    assert "after 13 body bytes" in lines[0]
    assert "Traceback" not in log and " ERROR " not in log, log
    assert "Exception in ASGI application" not in log, log


def test_a_trailing_slash_is_not_redirected_anywhere(relay):
    with httpx.Client(base_url=relay.url, timeout=5) as client:
        response = client.post("/tick/", content=b"{}", headers={
            "Host": "evil.example", "Authorization": f"Bearer {RELAY_TOKEN}"})
        assert response.status_code == 404, response.text
        assert "location" not in response.headers
        assert client.get("/healthz/", headers={"Host": "evil.example"}).status_code == 404


def test_keep_alive_still_works_for_requests_with_and_without_bodies(relay):
    with httpx.Client(base_url=relay.url, timeout=5) as client:
        for _ in range(3):
            health = client.get("/healthz")
            assert health.status_code == 200
            assert health.headers.get("connection") != "close"
        tick = client.post("/tick", content=b"{}", headers={
            "Authorization": f"Bearer {RELAY_TOKEN}"})
        assert tick.status_code == 202 and tick.headers.get("connection") != "close"
        refused = client.post("/tick", content=b"{}", headers={"Authorization": "Bearer no"})
        assert refused.status_code == 401


def test_an_idle_spare_connection_is_closed_without_a_warning(relay):
    # What a browser leaves open beside the page it loaded: no byte
    # ever comes. It is closed as before, but that is routine, not a WARNING in `up`.
    client = SlowClient(relay.port, b"", b"")
    try:
        data, _ = client.answer()
    finally:
        client.close()
    assert _status_line(data) == "HTTP/1.1 408 Request Timeout", data
    time.sleep(0.3)
    log = relay.process.log()
    assert "request headers not complete" not in log, log
    assert not [line for line in log.splitlines() if " WARNING " in line], log


def test_headers_that_stall_midway_are_still_a_warning(relay):
    client = SlowClient(relay.port, b"GET /healthz HTTP/1.1\r\nHost: relay.test\r\n", b"")
    try:
        data, _ = client.answer()
    finally:
        client.close()
    assert _status_line(data) == "HTTP/1.1 408 Request Timeout", data
    wait_for(lambda: "request headers not complete" in relay.process.log(), timeout=5)
    [line] = [ln for ln in relay.process.log().splitlines() if "headers not complete" in ln]
    assert " WARNING " in line, line
