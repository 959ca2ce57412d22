"""uvicorn's h11 protocol with a deadline on the request line and headers.

uvicorn bounds the idle time between two requests on a kept-alive
connection (`timeout_keep_alive`) but not the time a client may take to send
a request's headers, nor how long a fresh connection may stay silent. A
client trickling its headers a byte at a time would hold its connection
forever; a handful of them would tie the relay up. The body has its own
deadline in BodyLimitMiddleware, where the request is already an ASGI call.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

_BODY = b'{"error": "request headers not received in time"}'
#: Written as raw bytes: h11 will not let a server answer before it has a request.
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: application/json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n"
    b"connection: close\r\n"
    b"\r\n" + _BODY
)


def header_deadline_protocol(header_timeout_s: float) -> type[H11Protocol]:
    """A class for `uvicorn.run(http=...)` cutting headers slower than `header_timeout_s`."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,),
                {"header_timeout_s": header_timeout_s})


class HeaderDeadlineProtocol(H11Protocol):
    """H11Protocol that answers 408 and closes when a request's headers take too long.

    The clock starts when the connection opens, and on a kept-alive
    connection when the first byte of the next request arrives (uvicorn's
    keep-alive timeout covers the silence before it). It stops once h11 has
    the whole request line and headers.
    """

    header_timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    #: Whether the connection has sent anything at all.
    _spoke: bool = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        self._spoke = self._spoke or bool(data)
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        if self._spoke:
            log.warning("%s: request headers not complete within %gs; answered 408 and closed",
                        client, self.header_timeout_s)
        else:
            # Browsers open spare connections they may never use (Chromium keeps
            # one ready for the next click): closing one is routine, not a warning.
            log.debug("%s: connection left silent for %gs; answered 408 and closed",
                      client, self.header_timeout_s)
        self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()
