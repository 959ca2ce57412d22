"""Provider-neutral machinery shared by the Twilio and Resend wire fakes.

A *wire* is a real HTTP server (stdlib only) that answers the provider's REST
API closely enough that the provider's own SDK cannot tell the difference,
plus a ledger of what it "accepted" and a set of fault-injection knobs.

Everything mutable lives behind one lock per server. Each connection gets its
own thread (``ThreadingHTTPServer``), so sleeping to simulate latency in one
request never delays another.

Control API (JSON; never counted as provider traffic), for other processes
and for wires run with ``python -m tests.wire`` (``RemoteWire`` wraps it):

=======  ======================  ================================================
GET      /_wire/health           ``{"ok", "provider", "url"}``
GET      /_wire/info             credentials the wire accepts
GET      /_wire/config           current ``ChaosConfig``
POST     /_wire/config           ``configure(**body)``; answers the new config
POST     /_wire/reset            ``{"config": bool}``: wipe ledger/scripts/keys
POST     /_wire/script           ``{"recipient", "steps": [...]}`` or
                                 ``{"clear": true, "recipient"?}``
GET      /_wire/script           pending steps per recipient
POST     /_wire/rate_limit       ``{"count"?, "seconds"?, "retry_after"?}``
GET      /_wire/sends            ``?to=&since=``: accepted sends (``to_dict``)
POST     /_wire/wait             ``{"count", "recipient"?, "timeout"?}``: blocks
                                 until that many sends; 408 on timeout
GET      /_wire/duplicates       groups of same recipient + same content
GET      /_wire/attempts         ``?since=``: every send request and its outcome
GET      /_wire/stats            counts by outcome and HTTP status
POST     /_wire/status           Twilio ``{"sid", "status", "error_code"?}``;
                                 Resend ``{"id", "last_event"}``
=======  ======================  ================================================

Bad input answers 400 ``{"error": ...}``; unknown endpoints 404.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from email.message import Message
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

#: Every control endpoint lives under this prefix; neither SDK ever calls it.
CONTROL_PREFIX = "/_wire/"

#: Script key that matches any recipient without a script of its own.
ANY_RECIPIENT = "*"

# Request outcomes, one per request received on the provider API. Control API
# calls are not counted: they are not traffic a provider would see.
ACCEPTED = "accepted"
ACCEPTED_TIMEOUT = "accepted_timeout"
ACCEPTED_DROPPED = "accepted_dropped"
REPLAYED = "replayed"
REJECTED = "rejected"
SERVER_ERROR = "server_error"
RATE_LIMITED = "rate_limited"
DROPPED = "dropped"
IDEMPOTENCY_CONFLICT = "idempotency_conflict"
UNAUTHORIZED = "unauthorized"
READ = "read"
NOT_FOUND = "not_found"
BAD_REQUEST = "bad_request"
INTERNAL_ERROR = "internal_error"

_ACCEPT_OUTCOMES = frozenset({ACCEPTED, ACCEPTED_TIMEOUT, ACCEPTED_DROPPED})


# --------------------------------------------------------------------------
# Configuration and scripts
# --------------------------------------------------------------------------


@dataclass
class ChaosConfig:
    """Runtime knobs; change them with ``WireServer.configure(**fields)``.

    Attributes:
        latency: seconds slept before answering every provider request.
        error_rate: fraction (0..1) of send requests answered with a status
            drawn from ``error_statuses`` and NOT accepted.
        error_statuses: statuses used by ``error_rate``.
        retry_after: default ``Retry-After`` seconds for 429 answers.
        max_rps: if set, at most this many provider requests are admitted in
            any one second (a sliding one-second window, as the providers'
            per-second limits work); the rest are answered 429 with the time
            until the window has room as Retry-After. The times of every
            request are kept (``arrivals()``), to check what a client offered.
        timeout_after_accept: seconds to stall after accepting a send before
            answering (0 = off); the client times out but the send counts.
        timeout_after_accept_rate: fraction of accepted sends that stall.
        drop_rate: fraction of sends whose connection is closed unanswered,
            NOT accepted.
        drop_after_accept_rate: fraction of sends accepted and then closed
            unanswered ("maybe sent").
        chaos_on_reads: also apply error/rate-limit/drop knobs to GETs
            (list/fetch). Latency always applies to reads.
        idempotency_ttl: seconds an idempotency key is remembered (Resend).
        carrier_queue_s: seconds an accepted message waits in the provider's
            queue before it goes out (Twilio holds messages above a number's
            rate). Until then its ``date_sent`` is null, so ``DateSent``
            filters do not see it.
    """

    latency: float = 0.0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 503)
    retry_after: float = 1.0
    max_rps: float | None = None
    timeout_after_accept: float = 0.0
    timeout_after_accept_rate: float = 1.0
    drop_rate: float = 0.0
    drop_after_accept_rate: float = 0.0
    chaos_on_reads: bool = False
    idempotency_ttl: float = 24 * 3600.0
    carrier_queue_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy."""
        data = asdict(self)
        data["error_statuses"] = list(self.error_statuses)
        return data


_CONFIG_FIELDS = frozenset(f.name for f in fields(ChaosConfig))


def _coerce_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and normalise ``configure()`` input (it may come from JSON)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _CONFIG_FIELDS:
            raise ValueError(f"unknown config key {key!r}")
        if key == "error_statuses":
            statuses = tuple(int(s) for s in value)
            if not statuses or any(not 400 <= s <= 599 for s in statuses):
                raise ValueError("error_statuses must be non-empty 4xx/5xx codes")
            out[key] = statuses
        elif key == "chaos_on_reads":
            out[key] = bool(value)
        elif key == "max_rps":
            out[key] = None if value in (None, 0) else float(value)
        else:
            number = float(value)
            if number < 0:
                raise ValueError(f"{key} must be >= 0")
            if key.endswith("_rate") and number > 1:
                raise ValueError(f"{key} must be within 0..1")
            out[key] = number
    return out


@dataclass(frozen=True)
class Step:
    """One scripted reaction to a send request.

    ``kind`` is one of ``accept``, ``error``, ``rate_limit``,
    ``timeout_after_accept``, ``drop``, ``drop_after_accept``, ``latency``.
    ``status``/``code`` describe an ``error`` (``code`` is the Twilio error
    code or the Resend error name); ``seconds`` is the Retry-After, the stall
    or the extra latency depending on ``kind``.
    """

    kind: str
    status: int = 0
    code: int | str | None = None
    seconds: float = 0.0
    raw: str = ""


_NUMBER = re.compile(r"^\d+(\.\d+)?$")


def parse_common_step(token: str) -> Step | None:
    """Parse the provider-neutral step grammar; ``None`` if not recognised."""
    raw = token.strip()
    head, _, arg = raw.partition(":")
    head = head.strip().lower()
    arg = arg.strip()
    if head in ("accept", "ok"):
        return Step("accept", raw=raw)
    if head == "drop" and not arg:
        return Step("drop", raw=raw)
    if head == "drop_after_accept" and not arg:
        return Step("drop_after_accept", raw=raw)
    if head == "timeout_after_accept":
        seconds = float(arg) if arg else 30.0
        return Step("timeout_after_accept", seconds=seconds, raw=raw)
    if head == "latency" and _NUMBER.match(arg):
        return Step("latency", seconds=float(arg), raw=raw)
    if head == "429":
        if arg and not _NUMBER.match(arg):
            raise ValueError(f"bad Retry-After in step {raw!r}")
        return Step("rate_limit", status=429, seconds=float(arg) if arg else -1.0, raw=raw)
    return None


# --------------------------------------------------------------------------
# Ledger records
# --------------------------------------------------------------------------


@dataclass
class AcceptedSend:
    """One message the fake provider accepted (i.e. would really deliver).

    ``received_at``/``received_mono`` are taken when the request arrived
    (``time.time()`` / ``time.monotonic()``; CLOCK_MONOTONIC is system-wide on
    Linux so the monotonic value is comparable across processes on one host).
    """

    seq: int
    provider: str
    id: str
    to: str
    recipients: list[str]
    from_: str | None
    body: str | None
    subject: str | None
    html: str | None
    idempotency_key: str | None
    status_callback: str | None
    messaging_service_sid: str | None
    received_at: float
    received_mono: float
    accepted_at: float
    fault: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    status: str = "queued"
    error_code: int | None = None
    text: str | None = None

    @property
    def content(self) -> str:
        """What a human would call "the message": the SMS body, or the e-mail
        subject plus its text (HTML when there is no text part)."""
        if self.subject is None:
            return self.body or ""
        return f"{self.subject}\n{self.body or ''}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy (``from_`` is exported as ``from``)."""
        data = asdict(self)
        data["from"] = data.pop("from_")
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AcceptedSend:
        """Inverse of ``to_dict`` (used by ``RemoteWire``); unknown keys are
        ignored so an older reader survives a newer server."""
        values = dict(data)
        values["from_"] = values.pop("from", values.get("from_"))
        return cls(**{k: v for k, v in values.items() if k in _SEND_FIELDS})


_SEND_FIELDS = frozenset(f.name for f in fields(AcceptedSend))


@dataclass
class Attempt:
    """Every send request (accepted or not), for retry/backoff analysis."""

    seq: int
    received_at: float
    received_mono: float
    recipient: str | None
    outcome: str
    status: int
    idempotency_key: str | None
    id: str | None
    #: When the answer was decided (monotonic), after any latency or stall:
    #: the request was in flight from received_mono until then.
    answered_mono: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        """Inverse of ``to_dict``."""
        return cls(**{k: v for k, v in data.items() if k in _ATTEMPT_FIELDS})


_ATTEMPT_FIELDS = frozenset(f.name for f in fields(Attempt))


# --------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------


@dataclass
class WireRequest:
    """A parsed HTTP request handed to the provider logic."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    received_at: float
    received_mono: float

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup."""
        return self.headers.get(name)

    def json(self) -> Any:
        """Decode the body as JSON (raises ``ValueError`` on garbage)."""
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def arg(self, name: str) -> str | None:
        """First value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Reply:
    """An HTTP answer; ``None`` in its place means "close without answering"."""

    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, payload: Any, headers: Sequence[tuple[str, str]] = ()) -> Reply:
        """A JSON reply."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        return cls(status, body, headers=list(headers))


class _HTTPServer(ThreadingHTTPServer):
    # Daemon threads are not tracked for join, so long runs do not leak a list
    # entry per connection, and a stalled handler never blocks interpreter exit.
    daemon_threads = True
    # Bursts of hundreds of concurrent connects must not be refused (the
    # default backlog of 5 makes clients see ECONNREFUSED/timeouts).
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], wire: WireServer) -> None:
        self.wire = wire
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup
        # that can take seconds in sandboxes; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, conn: socket.socket) -> None:
        with self._conns_lock:
            self._conns.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._conns_lock:
            self._conns.discard(conn)

    def sever_all(self) -> None:
        """Cut every open connection, so a stopped wire really looks dead.

        Without this, keep-alive connections pooled by a client would keep
        being served by their handler threads after ``stop()``.
        """
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive: the twilio SDK reuses connections via a Session.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in one write anyway, but Nagle + delayed ACK
    # would add 40 ms stalls to any multi-segment answer.
    disable_nagle_algorithm = True
    # Idle keep-alive connections are closed after this, freeing the thread.
    timeout = 120.0
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        # Per-request stderr logging costs more than the request itself.
        return

    def _read_body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers, terminated by an empty line.
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        received_at, received_mono = time.time(), time.monotonic()
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        request = WireRequest(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            received_at=received_at,
            received_mono=received_mono,
        )
        wire = self.server.wire
        wire._pause(request, "arrived")
        reply = wire._handle(request)
        if reply is not None:
            wire._pause(request, "answering")
        if reply is None or self.server.wire._stopping.is_set():
            # Closing without a byte of response is what a crashed proxy or a
            # reset connection looks like to the client.
            self.close_connection = True
            return
        self._write(reply)

    def _write(self, reply: Reply) -> None:
        try:
            phrase = HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = "Status"
        lines = [
            f"HTTP/1.1 {reply.status} {phrase}",
            f"Date: {formatdate(usegmt=True)}",
            "Server: regnotify-wire",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(reply.body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in reply.headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            # One write: a single segment for small answers, no Nagle stall.
            self.wfile.write(head + reply.body)
        except OSError:
            # The client gave up (timeout) before we answered; that is the
            # point of timeout_after_accept, not an error.
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


# --------------------------------------------------------------------------
# The server base class
# --------------------------------------------------------------------------


class WireServer:
    """Base class: lifecycle, chaos knobs, scripts, ledger and control API.

    Subclasses implement ``_route`` (the provider API), ``_error_reply``
    (the provider's error body) and ``_parse_provider_step``.
    """

    provider: ClassVar[str] = "wire"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int | None = None,
        max_attempts_log: int = 500_000,
        **config: Any,
    ) -> None:
        """Create (but do not start) the server.

        Args:
            host: interface to bind; keep the default loopback.
            port: 0 picks a free port (read it back from ``.port``/``.url``).
            seed: seed for the chaos random generator (reproducible tests).
            max_attempts_log: bound on the per-request attempt log.
            **config: initial ``ChaosConfig`` fields, e.g. ``latency=0.05``.
        """
        self._host = host
        self._requested_port = port
        self._lock = threading.Lock()
        # Shares the lock, so waiters see every ledger change atomically.
        self._changed = threading.Condition(self._lock)
        self._initial_config = ChaosConfig(**_coerce_config(config))
        self._config = replace(self._initial_config)
        self._seed = seed
        self._rng = random.Random(seed)
        self._max_attempts_log = max_attempts_log
        self._server: _HTTPServer | None = None
        self._last_port = 0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        #: Called as ``pause(request, phase)`` around every provider request
        #: (not the control API): phase "arrived" before the provider handles
        #: it (a slow connect or upload: the provider has not seen it yet),
        #: "answering" after it did and before the answer is written (a slow
        #: read). A test holds the call there, or acts while it is out.
        self.pause: Callable[[WireRequest, str], None] | None = None
        self._reset_state()

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a background thread; returns ``self``.

        After a ``stop()`` this binds the port used before, so ``stop()`` /
        ``start()`` simulates a provider outage at an unchanged URL (the app
        under test keeps its configuration). Ledger and knobs survive it.
        """
        if self._server is not None:
            return self
        self._stopping.clear()
        port = self._requested_port or self._last_port
        server = _HTTPServer((self._host, port), self)
        self._server = server
        self._last_port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{self.provider}-wire",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and wake stalled handlers."""
        server, self._server = self._server, None
        if server is None:
            return
        # Stalled handlers sleep on this event, so they finish promptly; they
        # check it again before answering, so nothing is answered after this.
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.sever_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._server is not None

    @property
    def host(self) -> str:
        """Bound interface."""
        return self._host

    @property
    def port(self) -> int:
        """Bound port; while stopped, the port it had (or was asked for)."""
        if self._server is None:
            if self._requested_port or self._last_port:
                return self._requested_port or self._last_port
            raise RuntimeError("wire server not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (no trailing slash)."""
        return f"http://{self._host}:{self.port}"

    # -- knobs ---------------------------------------------------------------

    @property
    def config(self) -> ChaosConfig:
        """A copy of the current chaos configuration."""
        with self._lock:
            return replace(self._config)

    def configure(self, **values: Any) -> ChaosConfig:
        """Change chaos knobs at runtime (thread-safe); returns the new config.

        Accepts any ``ChaosConfig`` field plus ``seed`` (reseeds the random
        generator) and ``rate_limit_count``/``rate_limit_seconds`` (see
        ``rate_limit``).
        """
        values = dict(values)
        seed_given = "seed" in values
        seed = values.pop("seed", None)
        count = values.pop("rate_limit_count", None)
        seconds = values.pop("rate_limit_seconds", None)
        coerced = _coerce_config(values)
        with self._lock:
            self._config = replace(self._config, **coerced)
            if seed_given:
                self._seed = None if seed is None else int(seed)
                self._rng.seed(self._seed)
            if "max_rps" in coerced:
                self._window.clear()
        if count is not None or seconds is not None:
            self.rate_limit(count=count, seconds=seconds)
        return self.config

    def seed(self, value: int | None) -> None:
        """Reseed the chaos random generator."""
        self.configure(seed=value)

    def rate_limit(
        self,
        count: int | None = None,
        seconds: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer 429 to the next ``count`` sends and/or for ``seconds``.

        ``retry_after`` sets the Retry-After header (default: the config's
        ``retry_after``; for a window, the time left in it). ``count=0`` and
        ``seconds=0`` switch the respective limit off.
        """
        with self._lock:
            if count is not None:
                self._rl_remaining = max(0, int(count))
            if seconds is not None:
                self._rl_until = time.monotonic() + float(seconds) if seconds else 0.0
            self._rl_retry_after = None if retry_after is None else float(retry_after)

    def script(self, recipient: str, steps: Iterable[str | Step]) -> None:
        """Queue steps for the next send requests to ``recipient``.

        ``recipient`` is a phone number (Twilio ``To``) or an e-mail address
        (any Resend ``to``; case-insensitive); ``"*"`` matches any recipient
        without its own script. Steps are played in order, one per request;
        when exhausted, the global knobs apply again. Step grammar:
        ``accept``, ``drop``, ``drop_after_accept``, ``timeout_after_accept[:D]``,
        ``latency:S``, ``429[:RETRY_AFTER]``, any HTTP status ``NNN``
        (``NNN:CODE`` to set the provider code/name) and provider-specific
        permanent errors (Twilio error codes like ``21610``; Resend error names
        like ``validation_error``).
        """
        parsed = [s if isinstance(s, Step) else self.parse_step(s) for s in steps]
        key = self._recipient_key(recipient)
        with self._lock:
            self._scripts.setdefault(key, deque()).extend(parsed)

    def clear_scripts(self, recipient: str | None = None) -> None:
        """Drop pending scripts (all, or one recipient's)."""
        with self._lock:
            if recipient is None:
                self._scripts.clear()
            else:
                self._scripts.pop(self._recipient_key(recipient), None)

    def pending_scripts(self) -> dict[str, list[str]]:
        """Steps not played yet, per recipient."""
        with self._lock:
            return {k: [s.raw or s.kind for s in v] for k, v in self._scripts.items() if v}

    def parse_step(self, token: str) -> Step:
        """Parse one script step (raises ``ValueError`` on unknown steps)."""
        step = parse_common_step(token)
        if step is None:
            step = self._parse_provider_step(token.strip())
        if step is None:
            raise ValueError(f"unknown script step {token!r} for {self.provider}")
        return step

    # -- ledger ----------------------------------------------------------------

    def sends(self, recipient: str | None = None, since: int = 0) -> list[AcceptedSend]:
        """Accepted sends in arrival order (optionally for one recipient,
        optionally only those with ``seq > since``)."""
        with self._lock:
            if recipient is None:
                items = self._sends
            else:
                items = self._by_recipient.get(self._recipient_key(recipient), [])
            return [s for s in items if s.seq > since]

    def accepted_count(self, recipient: str | None = None) -> int:
        """Number of accepted sends (optionally for one recipient)."""
        with self._lock:
            if recipient is None:
                return len(self._sends)
            return len(self._by_recipient.get(self._recipient_key(recipient), []))

    def duplicates(self) -> dict[tuple[str, str], list[AcceptedSend]]:
        """Accepted sends grouped by (recipient, ``content``) with >1 entry."""
        groups: dict[tuple[str, str], list[AcceptedSend]] = {}
        for send in self.sends():
            groups.setdefault((send.to, send.content), []).append(send)
        return {k: v for k, v in groups.items() if len(v) > 1}

    def get_send(self, send_id: str) -> AcceptedSend | None:
        """The accepted send with this provider id (Twilio SID / Resend id)."""
        with self._lock:
            return self._by_id.get(send_id)

    def wait_for_sends(
        self, count: int, recipient: str | None = None, timeout: float = 10.0
    ) -> list[AcceptedSend]:
        """Block until at least ``count`` sends are accepted (optionally for
        one recipient) and return them all.

        Senders are usually other processes (a Celery worker), so polling
        the ledger with sleeps would make tests slow or flaky; this wakes on
        every accepted send instead. Raises ``TimeoutError`` with what did
        arrive.
        """
        deadline = time.monotonic() + timeout

        def current() -> list[AcceptedSend]:
            if recipient is None:
                return self._sends
            return self._by_recipient.get(self._recipient_key(recipient), [])

        with self._changed:
            while len(current()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [(s.to, s.content) for s in current()]
                    raise TimeoutError(
                        f"{self.provider} wire: wanted {count} accepted sends"
                        f"{'' if recipient is None else ' to ' + recipient}"
                        f" within {timeout}s, got {len(got)}: {got!r}"
                    )
                self._changed.wait(left)
            return list(current())

    def arrivals(self) -> list[float]:
        """Monotonic times of the requests that met the ``max_rps`` limit."""
        with self._lock:
            return list(self._arrivals)

    def max_in_any_second(self) -> int:
        """The most requests that arrived within any one second (``max_rps`` set)."""
        times = self.arrivals()
        best = 0
        start = 0
        for end, t in enumerate(times):
            while times[start] <= t - 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best

    def overlapping_attempts(self) -> list[tuple[Attempt, Attempt]]:
        """Pairs of send requests for one recipient that were in flight at once.

        Each recipient stands for one delivery in a test, so a pair is two
        tasks attempting the same delivery together.
        """
        by_recipient: dict[str, list[Attempt]] = {}
        for a in self.attempts():
            if a.recipient:
                by_recipient.setdefault(self._recipient_key(a.recipient), []).append(a)
        pairs: list[tuple[Attempt, Attempt]] = []
        for group in by_recipient.values():
            group.sort(key=lambda a: a.received_mono)
            for i, first in enumerate(group):
                for later in group[i + 1:]:
                    if later.received_mono >= first.answered_mono:
                        break
                    pairs.append((first, later))
        return pairs

    def attempts(self, since: int = 0) -> list[Attempt]:
        """Every send request (accepted or not) in arrival order."""
        with self._lock:
            return [a for a in self._attempts if a.seq > since]

    def stats(self) -> dict[str, Any]:
        """Counts of provider requests by outcome and by HTTP status."""
        with self._lock:
            return {
                "provider": self.provider,
                "requests": sum(self._outcomes.values()),
                "accepted": len(self._sends),
                "outcomes": dict(self._outcomes),
                "by_status": {str(k): v for k, v in sorted(self._by_status.items())},
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
            }

    def reset(self, config: bool = False) -> None:
        """Forget sends, attempts, stats, scripts, rate limits and idempotency
        keys; with ``config=True`` also restore the constructor's knobs and
        seed."""
        with self._lock:
            self._reset_state()
            if config:
                self._config = replace(self._initial_config)
                self._rng.seed(self._seed)

    # -- internals -------------------------------------------------------------

    def _reset_state(self) -> None:
        self._sends: list[AcceptedSend] = []
        self._by_recipient: dict[str, list[AcceptedSend]] = {}
        self._by_id: dict[str, AcceptedSend] = {}
        self._attempts: deque[Attempt] = deque(maxlen=self._max_attempts_log)
        self._outcomes: Counter[str] = Counter()
        self._by_status: Counter[int] = Counter()
        self._scripts: dict[str, deque[Step]] = {}
        self._rl_remaining = 0
        self._rl_until = 0.0
        self._rl_retry_after: float | None = None
        # Monotonic times of the requests admitted in the last second.
        self._window: deque[float] = deque()
        # Monotonic times of every rate-limited request (admitted or not).
        self._arrivals: list[float] = []
        self._seq = 0
        self._attempt_seq = 0
        # Not reset across reset(): requests in flight are still in flight.
        if not hasattr(self, "_in_flight"):
            self._in_flight = 0
            self._max_in_flight = 0
        self._reset_provider_state()

    def _reset_provider_state(self) -> None:
        """Hook for subclasses (called with the lock held)."""

    @staticmethod
    def _recipient_key(recipient: str) -> str:
        return recipient.strip()

    def _pause(self, request: WireRequest, phase: str) -> None:
        hook = self.pause
        if hook is None or request.path.startswith(CONTROL_PREFIX):
            return
        try:
            hook(request, phase)
        except Exception:
            # The hook is the test's: its failure must not look like the provider's.
            traceback.print_exc(file=sys.stderr)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            # Event.wait instead of time.sleep: stop() wakes every stall.
            self._stopping.wait(seconds)

    def _decide(self, recipients: Sequence[str], is_read: bool) -> Step | None:
        """Pick the fault for one request: a script step, else the global
        knobs. ``None`` means "behave normally" (no fault at all)."""
        with self._lock:
            if not is_read:
                for key in [*(self._recipient_key(r) for r in recipients), ANY_RECIPIENT]:
                    queue = self._scripts.get(key)
                    if queue:
                        step = queue.popleft()
                        if not queue:
                            del self._scripts[key]
                        return step
            if is_read and not self._config.chaos_on_reads:
                return None
            cfg = self._config
            now = time.monotonic()
            if self._rl_remaining > 0:
                self._rl_remaining -= 1
                retry = self._rl_retry_after
                return Step("rate_limit", 429, seconds=cfg.retry_after if retry is None else retry)
            if self._rl_until > now:
                retry = self._rl_retry_after
                left = self._rl_until - now
                return Step("rate_limit", 429, seconds=left if retry is None else retry)
            if cfg.max_rps:
                self._arrivals.append(now)
                window = self._window
                while window and window[0] <= now - 1.0:
                    window.popleft()
                if len(window) >= max(1, int(cfg.max_rps)):
                    wait = window[0] + 1.0 - now
                    return Step("rate_limit", 429, seconds=wait)
                window.append(now)
            rng = self._rng
            if cfg.error_rate and rng.random() < cfg.error_rate:
                status = rng.choice(cfg.error_statuses)
                return Step("error", status=status)
            if cfg.drop_rate and rng.random() < cfg.drop_rate:
                return Step("drop")
            if is_read:
                return None
            if cfg.drop_after_accept_rate and rng.random() < cfg.drop_after_accept_rate:
                return Step("drop_after_accept")
            if cfg.timeout_after_accept and (
                cfg.timeout_after_accept_rate >= 1.0 or rng.random() < cfg.timeout_after_accept_rate
            ):
                return Step("timeout_after_accept", seconds=cfg.timeout_after_accept)
            return None

    def _record_send(self, send_factory: Any) -> AcceptedSend:
        """Append to the ledger; ``send_factory(seq)`` builds the record under
        the lock so sequence numbers follow ledger order."""
        with self._lock:
            self._seq += 1
            send: AcceptedSend = send_factory(self._seq)
            self._sends.append(send)
            # A dict keeps order and files one send once per distinct key, even
            # when recipients repeat or differ only in case.
            keys = dict.fromkeys(self._recipient_key(r) for r in [send.to, *send.recipients])
            for key in keys:
                self._by_recipient.setdefault(key, []).append(send)
            self._by_id[send.id] = send
            self._changed.notify_all()
            return send

    def _count(
        self,
        outcome: str,
        status: int,
        request: WireRequest | None = None,
        *,
        recipient: str | None = None,
        idempotency_key: str | None = None,
        send_id: str | None = None,
    ) -> None:
        with self._lock:
            self._outcomes[outcome] += 1
            self._by_status[status] += 1
            if request is not None:
                self._attempt_seq += 1
                self._attempts.append(
                    Attempt(
                        seq=self._attempt_seq,
                        received_at=request.received_at,
                        received_mono=request.received_mono,
                        recipient=recipient,
                        outcome=outcome,
                        status=status,
                        idempotency_key=idempotency_key,
                        id=send_id,
                        answered_mono=time.monotonic(),
                    )
                )

    def _retry_after_header(self, seconds: float) -> str:
        # Retry-After is integer delay-seconds (RFC 9110); never round down
        # to a value that would make the client retry too early.
        if seconds < 0:
            seconds = self._config.retry_after
        return str(max(0, math.ceil(seconds)))

    def _handle(self, request: WireRequest) -> Reply | None:
        if request.path.startswith(CONTROL_PREFIX):
            try:
                return self._control(request)
            except (ValueError, TypeError, KeyError) as exc:
                return Reply.json(400, {"error": f"{type(exc).__name__}: {exc}"})
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                return Reply.json(500, {"error": f"{type(exc).__name__}: {exc}"})
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            return self._route(request)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self._count(INTERNAL_ERROR, 500)
            return self._error_reply(500, None, "wire internal error (see stderr)")
        finally:
            with self._lock:
                self._in_flight -= 1

    # -- subclass hooks --------------------------------------------------------

    def _route(self, request: WireRequest) -> Reply | None:
        raise NotImplementedError

    def _error_reply(
        self,
        status: int,
        code: int | str | None,
        message: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Reply:
        raise NotImplementedError

    def _parse_provider_step(self, token: str) -> Step | None:
        raise NotImplementedError

    def _control_extra(self, request: WireRequest, name: str) -> Reply | None:
        """Hook for provider-specific control endpoints."""
        return None

    # -- control API -------------------------------------------------------------

    def _control(self, request: WireRequest) -> Reply:
        name = request.path[len(CONTROL_PREFIX) :].strip("/")
        method = request.method
        payload: dict[str, Any] = {}
        if method == "POST" and request.body:
            decoded = request.json()
            if decoded is not None and not isinstance(decoded, dict):
                raise ValueError("control payload must be a JSON object")
            payload = decoded or {}
        if name == "health" and method == "GET":
            return Reply.json(200, {"ok": True, "provider": self.provider, "url": self.url})
        if name == "sends" and method == "GET":
            since = int(request.arg("since") or 0)
            sends = self.sends(recipient=request.arg("to"), since=since)
            return Reply.json(200, {"sends": [s.to_dict() for s in sends], "count": len(sends)})
        if name == "wait" and method == "POST":
            # A 408 rather than a hang past the caller's own HTTP timeout.
            timeout = min(float(payload.get("timeout", 10.0)), 300.0)
            recipient = payload.get("recipient")
            try:
                sends = self.wait_for_sends(int(payload["count"]), recipient, timeout)
            except TimeoutError as exc:
                return Reply.json(408, {"error": str(exc), "count": self.accepted_count(recipient)})
            return Reply.json(200, {"sends": [s.to_dict() for s in sends], "count": len(sends)})
        if name == "duplicates" and method == "GET":
            groups = [[s.to_dict() for s in group] for group in self.duplicates().values()]
            return Reply.json(200, {"duplicates": groups})
        if name == "attempts" and method == "GET":
            attempts = self.attempts(since=int(request.arg("since") or 0))
            return Reply.json(200, {"attempts": [a.to_dict() for a in attempts]})
        if name == "stats" and method == "GET":
            return Reply.json(200, self.stats())
        if name == "config" and method == "GET":
            return Reply.json(200, self.config.to_dict())
        if name == "config" and method == "POST":
            return Reply.json(200, self.configure(**payload).to_dict())
        if name == "reset" and method == "POST":
            self.reset(config=bool(payload.get("config", False)))
            return Reply.json(200, {"ok": True})
        if name == "script" and method == "POST":
            if payload.get("clear"):
                self.clear_scripts(payload.get("recipient"))
            else:
                self.script(str(payload["recipient"]), [str(s) for s in payload["steps"]])
            return Reply.json(200, {"pending": self.pending_scripts()})
        if name == "script" and method == "GET":
            return Reply.json(200, {"pending": self.pending_scripts()})
        if name == "rate_limit" and method == "POST":
            self.rate_limit(
                count=payload.get("count"),
                seconds=payload.get("seconds"),
                retry_after=payload.get("retry_after"),
            )
            return Reply.json(200, {"ok": True})
        extra = self._control_extra(request, name)
        if extra is not None:
            return extra
        return Reply.json(404, {"error": f"no control endpoint {method} {request.path}"})


def is_accept_outcome(outcome: str) -> bool:
    """True for outcomes where the provider kept the message."""
    return outcome in _ACCEPT_OUTCOMES
