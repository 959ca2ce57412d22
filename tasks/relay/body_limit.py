"""Request bodies: 413 past a small size limit, 408 past a time limit, one log line on hang-up."""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    """Raised from `receive` once a streamed body passes the limit."""


class BodyTooSlow(Exception):
    """Raised from `receive` once the body has not arrived within the deadline."""


class BodyLimitMiddleware:
    """Pure ASGI middleware capping a request body's size and the time it may take to arrive.

    413 on a Content-Length over the limit, or once a streamed body passes
    it; 408 when the whole body has not arrived `timeout_s` after the
    headers. Pure ASGI (not BaseHTTPMiddleware) so both are checked on the
    very `receive` the endpoint reads from: a chunked body has no
    Content-Length and is only known to be too large while it is being read,
    and a body trickling in a byte at a time only shows itself there too.
    The deadline covers the whole body, not each read, so sending one byte
    per second does not keep renewing it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request with its body capped."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _reply(send, 400, "invalid Content-Length")
            return
        if declared is not None and declared > self.max_bytes:
            await _reply(send, 413, f"body over {self.max_bytes} bytes")
            return

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        received = 0
        # Without Content-Length or Transfer-Encoding a request has no body (RFC 9112 6.3).
        body_complete = declared == 0 or (
            declared is None and not _has_header(scope, b"transfer-encoding"))
        started = False

        async def limited_receive() -> Message:
            nonlocal received, body_complete
            if body_complete:
                # Past the body, receive() only waits for a disconnect: no deadline.
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise BodyTooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
                body_complete = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body_complete and not _has_header(message, b"connection"):
                    # Answered before the body was read (a refused token): the
                    # rest of it is never read, so the connection cannot carry
                    # another request, and a client still trickling it must
                    # not keep it open.
                    message = {**message,
                               "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _reply(send, 413, f"body over {self.max_bytes} bytes")
        except BodyTooSlow:
            log.warning("%s %s from %s: body not complete within %gs (%d bytes); answered 408",
                        scope["method"], scope["path"], _client(scope), self.timeout_s, received)
            if started:
                raise
            await _reply(send, 408, f"request body not received within {self.timeout_s:g}s")
        except ClientDisconnect:
            # The client hung up mid-request: nothing to answer and nothing wrong here.
            log.info("%s %s from %s: client disconnected after %d body bytes",
                     scope["method"], scope["path"], _client(scope), received)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "a client"


def _has_header(holder: Scope | Message, name: bytes) -> bool:
    return any(key.lower() == name for key, _ in holder.get("headers", []))


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when absent, -1 when unparseable."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"error": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            # The rest of the body is never read; the connection cannot be
            # reused for another request.
            (b"connection", b"close"),
        ],
    })
    await send({"type": "http.response.body", "body": body})
