"""A fake of Resend's e-mail API that the real ``resend`` SDK talks to
unmodified.

The SDK is configured through module globals, so point it here with::

    import resend
    resend.api_url = wire.url          # no trailing slash; the SDK appends /emails
    resend.api_key = wire.api_key
    # optional, for timeout tests (seconds; the SDK's default is 30):
    resend.default_http_client = resend.http_client_requests.RequestsClient(timeout=1)

or ``with wire.sdk(timeout=1): ...`` / ``saved = wire.configure_sdk(); ...;
saved.restore()``, which put the previous globals back afterwards.

Endpoints: ``POST /emails`` (send), ``POST /emails/batch`` (up to 100
e-mails in one request), ``GET /emails/{id}`` (retrieve) and ``GET /emails``
(list, newest first).

Batch: the body is a JSON array of send payloads. ``x-batch-validation:
strict`` (the default) refuses the whole batch with 422 when any e-mail is
invalid (the message names its index); ``permissive`` sends the valid ones
and answers ``{"data": [{"id"}...], "errors": [{"index", "message"}...]}``,
``data`` holding the accepted e-mails in request order. The batch is one
request for the rate limit, and its Idempotency-Key covers the whole array. Errors use Resend's body
``{"statusCode", "name", "message"}``.

Idempotency (``Idempotency-Key`` header, what ``resend.Emails.send(params,
{"idempotency_key": k})`` sends) follows Resend's documented rules:

* same key, same payload, first request finished and accepted: the stored
  answer again (same id), counted ``REPLAYED``, no new ledger entry;
* same key, different payload: 409 ``invalid_idempotent_request``;
* same key while the first request is still being processed (e.g. during
  ``latency``): 409 ``concurrent_idempotent_requests``;
* a first request that was *not* accepted (429, 5xx, 422, dropped) does not
  keep the key, so a retry with the same key can still succeed;
* keys are forgotten after ``ChaosConfig.idempotency_ttl`` (24 h default).

Rate limiting and server errors are decided before the idempotency check,
as a gateway in front of the API would: a retry can be answered 429 even when
its key would have replayed.

Permanent errors at API time: any ``to``/``cc``/``bcc`` address at the domain
``invalid.test`` (or a subdomain) gets 422 ``validation_error``. Resend's own
``delivered@``/``bounced@``/``complained@resend.dev`` test addresses are
accepted (they fail only at delivery time, as in production) and reported by
``GET /emails/{id}`` with the matching ``last_event``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

from ._core import (
    ACCEPTED,
    ACCEPTED_DROPPED,
    ACCEPTED_TIMEOUT,
    BAD_REQUEST,
    DROPPED,
    IDEMPOTENCY_CONFLICT,
    NOT_FOUND,
    RATE_LIMITED,
    READ,
    REJECTED,
    REPLAYED,
    SERVER_ERROR,
    UNAUTHORIZED,
    AcceptedSend,
    Reply,
    Step,
    WireRequest,
    WireServer,
)

DEFAULT_API_KEY = "re_wire_0123456789abcdef"

#: Domain whose addresses are refused at API time with 422 validation_error.
INVALID_DOMAIN = "invalid.test"

#: Resend's test inboxes: accepted, then "delivered" with this last_event.
RESEND_TEST_ADDRESSES: dict[str, str] = {
    "delivered@resend.dev": "delivered",
    "bounced@resend.dev": "bounced",
    "complained@resend.dev": "complained",
}

#: Error name -> (HTTP status, default message), as in Resend's error docs.
RESEND_ERRORS: dict[str, tuple[int, str]] = {
    "invalid_idempotency_key": (400, "The key must be between 1-256 chars."),
    "missing_api_key": (401, "Missing API key in the authorization header."),
    "restricted_api_key": (401, "This API key is restricted to only send emails."),
    "invalid_api_key": (403, "API key is invalid"),
    "not_found": (404, "The requested endpoint does not exist."),
    "method_not_allowed": (405, "Method is not allowed for the requested path."),
    "invalid_idempotent_request": (
        409,
        "Same idempotency key used with a different request payload. "
        "Change your idempotency key or payload.",
    ),
    "concurrent_idempotent_requests": (
        409,
        "Same idempotency key used while original request is still in progress. "
        "Try the request again later.",
    ),
    "validation_error": (422, "We found an error with one or more fields in the request."),
    "missing_required_field": (422, "The request body is missing one or more required fields."),
    "invalid_parameter": (422, "One or more parameters are invalid."),
    "rate_limit_exceeded": (
        429,
        "Too many requests. You can only make 2 requests per second. See rate limit "
        "response headers for more information. Or contact support to increase rate limit.",
    ),
    "daily_quota_exceeded": (429, "You have reached your daily email sending quota."),
    "monthly_quota_exceeded": (429, "You have reached your monthly email sending quota."),
    "application_error": (500, "An unexpected error occurred."),
    "internal_server_error": (500, "An unexpected error occurred."),
}

# Name used when a script or error_rate gives only a status.
_STATUS_NAMES: dict[int, str] = {
    400: "validation_error",
    401: "missing_api_key",
    403: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    409: "invalid_idempotent_request",
    422: "validation_error",
    429: "rate_limit_exceeded",
}

_MAX_RECIPIENTS = 50
_MAX_KEY_LENGTH = 256
#: E-mails per POST /emails/batch.
_MAX_BATCH = 100

_EMAILS_PATH = re.compile(r"^/emails(?:/([^/]+))?/?$")
# Deliberately loose: the point is to refuse what Resend refuses outright
# (no '@', spaces, empty parts), not to implement RFC 5322.
_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
_TAG_PART = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_ADDRESS_FORMAT = "The email address needs to follow the `email@example.com` or " + (
    "`Name <email@example.com>` format."
)


def bare_address(value: str) -> str:
    """``"Name <a@b.c>"`` -> ``"a@b.c"``; anything else stripped as is."""
    _, address = parseaddr(value)
    return (address or value).strip()


@dataclass
class _IdempotencyEntry:
    fingerprint: str
    created: float
    # None while the first request with this key is still being processed.
    reply: Reply | None = None
    send_id: str | None = None


@dataclass
class ResendSdkState:
    """The ``resend`` module globals a wire overrides, to put them back."""

    api_url: str
    api_key: str | None
    http_client: Any

    @classmethod
    def capture(cls) -> ResendSdkState:
        """Snapshot the current globals."""
        import resend

        return cls(resend.api_url, resend.api_key, resend.default_http_client)

    def restore(self) -> None:
        """Put the snapshot back."""
        import resend

        resend.api_url = self.api_url
        resend.api_key = self.api_key
        resend.default_http_client = self.http_client


class ResendWire(WireServer):
    """Fake Resend e-mail API with a ledger, idempotency and fault injection.

    ``AcceptedSend`` fields for e-mail: ``to`` is the first ``to`` address
    (bare, as given), ``recipients`` all ``to`` addresses, ``subject``,
    ``text``, ``html``, ``body`` (= ``text``, else ``html``; what duplicate
    detection compares), ``idempotency_key`` and the raw JSON in ``payload``
    (``reply_to``, ``tags``, ``headers``, ``cc``, ``bcc`` ...). ``status`` is
    the ``last_event`` that ``GET /emails/{id}`` reports.
    """

    provider = "resend"

    #: Resend names a missing required field ``missing_required_field``; the
    #: wire answers ``validation_error`` (also 422) by default so that code
    #: keyed on the status and on either name is exercised. Set this class or
    #: instance attribute to ``"missing_required_field"`` to mimic Resend.
    missing_field_name: str = "validation_error"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str = DEFAULT_API_KEY,
        **kwargs: Any,
    ) -> None:
        """See ``WireServer.__init__``; ``api_key`` is the only key accepted
        (``Authorization: Bearer <api_key>``)."""
        self.api_key = api_key
        super().__init__(host, port, **kwargs)

    # -- SDK convenience ---------------------------------------------------------

    def configure_sdk(self, timeout: float | None = None) -> ResendSdkState:
        """Point the ``resend`` module globals at this wire.

        ``timeout`` (seconds) installs a fresh ``RequestsClient`` with that
        timeout. Returns the previous state; call ``.restore()`` on it when
        done, since the globals are shared by the whole process.
        """
        import resend
        from resend.http_client_requests import RequestsClient

        saved = ResendSdkState.capture()
        resend.api_url = self.url
        resend.api_key = self.api_key
        if timeout is not None:
            # Annotated int, but it is handed straight to requests: floats work.
            resend.default_http_client = RequestsClient(timeout=timeout)  # type: ignore[arg-type]
        return saved

    @contextlib.contextmanager
    def sdk(self, timeout: float | None = None) -> Iterator[None]:
        """``configure_sdk`` for the duration of a ``with`` block."""
        saved = self.configure_sdk(timeout)
        try:
            yield
        finally:
            saved.restore()

    def set_status(self, email_id: str, last_event: str) -> AcceptedSend:
        """Change the ``last_event`` a later ``GET /emails/{id}`` reports."""
        with self._lock:
            send = self._by_id[email_id]
            send.status = last_event
            return send

    # -- provider behaviour --------------------------------------------------------

    def _reset_provider_state(self) -> None:
        self._idempotency: dict[str, _IdempotencyEntry] = {}

    @staticmethod
    def _recipient_key(recipient: str) -> str:
        # Addresses are matched case-insensitively, display names ignored.
        return bare_address(recipient).lower()

    def _error_reply(
        self,
        status: int,
        code: int | str | None,
        message: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Reply:
        name = str(code) if isinstance(code, str) else None
        if name is None:
            name = _STATUS_NAMES.get(status, "application_error")
        if message is None:
            message = RESEND_ERRORS.get(name, (status, "An unexpected error occurred."))[1]
        return Reply.json(status, {"statusCode": status, "name": name, "message": message}, headers)

    def _rate_limit_reply(self, name: str, retry_after: float) -> Reply:
        seconds = self._retry_after_header(retry_after)
        limit = self._config.max_rps
        # Lower-case names, as Resend documents and sends them. The SDK copies
        # them into a plain dict (ResendError.headers), where case matters:
        # callers must look up "retry-after", or compare case-insensitively.
        headers = [
            ("retry-after", seconds),
            ("ratelimit-limit", str(max(1, round(limit))) if limit else "2"),
            ("ratelimit-remaining", "0"),
            ("ratelimit-reset", seconds),
        ]
        return self._error_reply(429, name, None, headers)

    def _parse_provider_step(self, token: str) -> Step | None:
        head, _, arg = token.partition(":")
        head, arg = head.strip(), arg.strip()
        if head.isdigit() and len(head) == 3 and 400 <= int(head) <= 599:
            if arg and arg not in RESEND_ERRORS:
                raise ValueError(f"unknown Resend error name {arg!r} in step {token!r}")
            return Step("error", status=int(head), code=arg or None, raw=token)
        if head in RESEND_ERRORS and not arg:
            return Step("error", status=RESEND_ERRORS[head][0], code=head, raw=token)
        return None

    def _route(self, request: WireRequest) -> Reply | None:
        match = _EMAILS_PATH.match(request.path)
        if match is None:
            self._count(NOT_FOUND, 404)
            return self._error_reply(404, "not_found")
        email_id = match.group(1)
        is_send = request.method == "POST" and email_id in (None, "batch")
        if not is_send and request.method != "GET":
            self._count(NOT_FOUND, 405)
            return self._error_reply(405, "method_not_allowed")
        refused = self._check_auth(request)
        if refused is not None:
            self._sleep(self._config.latency)
            # A refused send is still a send attempt the app made.
            self._count(UNAUTHORIZED, refused.status, request if is_send else None)
            return refused
        if request.method == "POST" and email_id == "batch":
            return self._send_batch(request)
        if is_send:
            return self._send(request)
        return self._read(request, email_id)

    def _check_auth(self, request: WireRequest) -> Reply | None:
        header = (request.header("Authorization") or "").strip()
        scheme, _, token = header.partition(" ")
        token = token.strip()
        # The SDK sends "Bearer None" when resend.api_key was never set.
        if scheme.lower() != "bearer" or token in ("", "None"):
            return self._error_reply(401, "missing_api_key")
        if token != self.api_key:
            return self._error_reply(403, "invalid_api_key")
        return None

    def _before_api(
        self, key: str | None, recipients: Sequence[str], count: Callable[[str, int], None]
    ) -> tuple[Step | None, bool, Reply | None]:
        """What both send routes check before the API proper: the key's length,
        then the scripted rate limits, errors and drops (the key is not looked
        at for those). Returns (the step, refused, the reply: None for a drop)."""
        if key is not None and not 1 <= len(key) <= _MAX_KEY_LENGTH:
            self._sleep(self._config.latency)
            count(REJECTED, 400)
            return None, True, self._error_reply(400, "invalid_idempotency_key")
        step = self._decide(recipients, is_read=False)
        if step is None or step.kind not in ("rate_limit", "error", "drop"):
            return step, False, None
        self._sleep(self._config.latency)
        if step.kind == "rate_limit":
            count(RATE_LIMITED, 429)
            return step, True, self._rate_limit_reply("rate_limit_exceeded", step.seconds)
        if step.kind == "error":
            if step.status == 429:
                count(RATE_LIMITED, 429)
                name = str(step.code or "rate_limit_exceeded")
                return step, True, self._rate_limit_reply(name, -1.0)
            count(SERVER_ERROR if step.status >= 500 else REJECTED, step.status)
            return step, True, self._error_reply(step.status, step.code)
        count(DROPPED, 0)
        return step, True, None

    def _send(self, request: WireRequest) -> Reply | None:
        key = request.header("Idempotency-Key")
        try:
            data = request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self._sleep(self._config.latency)
            self._count(BAD_REQUEST, 422, request, idempotency_key=key)
            return self._error_reply(422, "validation_error", "Invalid JSON body.")
        to_list = _as_list(data.get("to"))
        to_addrs = [bare_address(a) for a in to_list if isinstance(a, str)]
        first = to_addrs[0] if to_addrs else None

        def count(outcome: str, status: int, send_id: str | None = None) -> None:
            self._count(
                outcome, status, request, recipient=first, idempotency_key=key, send_id=send_id
            )

        step, refused, reply = self._before_api(key, to_addrs, count)
        if refused:
            return reply

        entry: _IdempotencyEntry | None = None
        if key is not None:
            verdict, entry = self._claim(key, _fingerprint(data))
            if verdict != "new":
                self._sleep(self._config.latency)
                if verdict == "replay":
                    assert entry is not None and entry.reply is not None
                    return self._finish_accepted(
                        step, entry.reply, lambda o, s: count(o, s, entry.send_id), REPLAYED
                    )
                count(IDEMPOTENCY_CONFLICT, 409)
                return self._error_reply(409, verdict)

        try:
            self._sleep(self._config.latency)
            if step is not None and step.kind == "latency":
                self._sleep(step.seconds)
            failure = self._validate(data)
            if failure is not None:
                count(REJECTED, 422)
                return self._error_reply(422, failure[0], failure[1])
            send = self._record_send(
                lambda seq: self._build_send(seq, request, data, to_addrs, key, step)
            )
            reply = Reply.json(200, {"id": send.id})
            if entry is not None:
                with self._lock:
                    entry.reply = reply
                    entry.send_id = send.id
        finally:
            if entry is not None and entry.reply is None:
                self._release(key, entry)
        return self._finish_accepted(step, reply, lambda o, s: count(o, s, send.id), ACCEPTED)

    def _send_batch(self, request: WireRequest) -> Reply | None:
        key = request.header("Idempotency-Key")
        mode = (request.header("x-batch-validation") or "strict").strip().lower()
        try:
            data = request.json()
        except ValueError:
            data = None
        first: str | None = None
        if isinstance(data, list) and data and isinstance(data[0], dict):
            first_to = [bare_address(a) for a in _as_list(data[0].get("to")) if isinstance(a, str)]
            first = first_to[0] if first_to else None

        def count(outcome: str, status: int, send_id: str | None = None) -> None:
            self._count(
                outcome, status, request, recipient=first, idempotency_key=key, send_id=send_id
            )

        if mode not in ("strict", "permissive"):
            self._sleep(self._config.latency)
            count(BAD_REQUEST, 422)
            return self._error_reply(
                422, "validation_error", "x-batch-validation must be strict or permissive."
            )
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            self._sleep(self._config.latency)
            count(BAD_REQUEST, 422)
            return self._error_reply(
                422, "validation_error", "The body must be an array of e-mails."
            )
        if not 1 <= len(data) <= _MAX_BATCH:
            self._sleep(self._config.latency)
            count(BAD_REQUEST, 422)
            return self._error_reply(
                422, "validation_error", f"A batch holds 1 to {_MAX_BATCH} e-mails."
            )
        recipients = [
            bare_address(a)
            for item in data
            for a in _as_list(item.get("to"))
            if isinstance(a, str)
        ]
        step, refused, reply = self._before_api(key, recipients, count)
        if refused:
            return reply

        entry: _IdempotencyEntry | None = None
        if key is not None:
            # The mode is part of what was asked: the same array in another mode differs.
            verdict, entry = self._claim(key, _fingerprint({"batch": data, "mode": mode}))
            if verdict != "new":
                self._sleep(self._config.latency)
                if verdict == "replay":
                    assert entry is not None and entry.reply is not None
                    return self._finish_accepted(
                        step, entry.reply, lambda o, s: count(o, s, entry.send_id), REPLAYED
                    )
                count(IDEMPOTENCY_CONFLICT, 409)
                return self._error_reply(409, verdict)

        reply: Reply | None = None
        ids: list[str] = []
        try:
            self._sleep(self._config.latency)
            if step is not None and step.kind == "latency":
                self._sleep(step.seconds)
            failures = [(i, self._validate(item)) for i, item in enumerate(data)]
            errors = [{"index": i, "message": f[1]} for i, f in failures if f is not None]
            if errors and mode == "strict":
                count(REJECTED, 422)
                first_error = errors[0]
                return self._error_reply(
                    422, "validation_error", f"emails[{first_error['index']}]: "
                    f"{first_error['message']}"
                )
            bad = {e["index"] for e in errors}
            for i, item in enumerate(data):
                if i in bad:
                    continue
                to_addrs = [bare_address(a) for a in _as_list(item.get("to"))
                            if isinstance(a, str)]
                send = self._record_send(
                    lambda seq, item=item, to_addrs=to_addrs: self._build_send(
                        seq, request, item, to_addrs, key, step
                    )
                )
                ids.append(send.id)
            payload: dict[str, Any] = {"data": [{"id": i} for i in ids]}
            if mode == "permissive":
                payload["errors"] = errors
            reply = Reply.json(200, payload)
            if entry is not None:
                with self._lock:
                    entry.reply = reply
                    entry.send_id = ids[0] if ids else None
        finally:
            if entry is not None and entry.reply is None:
                self._release(key, entry)
        return self._finish_accepted(
            step, reply, lambda o, s: count(o, s, ids[0] if ids else None), ACCEPTED
        )

    def _finish_accepted(
        self, step: Step | None, reply: Reply, count: Any, plain_outcome: str
    ) -> Reply | None:
        """Answer an accepted (or replayed) send, honouring accept-then-fail
        faults: the ledger already has the send, only the answer is lost."""
        if step is not None and step.kind == "drop_after_accept":
            count(ACCEPTED_DROPPED if plain_outcome == ACCEPTED else plain_outcome, 0)
            return None
        if step is not None and step.kind == "timeout_after_accept":
            count(ACCEPTED_TIMEOUT if plain_outcome == ACCEPTED else plain_outcome, reply.status)
            self._sleep(step.seconds)
            return reply
        count(plain_outcome, reply.status)
        return reply

    def _claim(self, key: str, fingerprint: str) -> tuple[str, _IdempotencyEntry | None]:
        """Look the key up and, if it is free, hold it for this request.

        Returns ``("new", entry)``, ``("replay", entry)``,
        ``("invalid_idempotent_request", None)`` or
        ``("concurrent_idempotent_requests", None)``.
        """
        now = time.monotonic()
        with self._lock:
            entry = self._idempotency.get(key)
            if entry is not None and now - entry.created > self._config.idempotency_ttl:
                entry = None
            if entry is None:
                entry = _IdempotencyEntry(fingerprint, now)
                self._idempotency[key] = entry
                return "new", entry
            if entry.fingerprint != fingerprint:
                return "invalid_idempotent_request", None
            if entry.reply is None:
                return "concurrent_idempotent_requests", None
            return "replay", entry

    def _release(self, key: str | None, entry: _IdempotencyEntry) -> None:
        with self._lock:
            # Identity check: reset() may have dropped it, or it may have
            # expired and been claimed again by now.
            if key is not None and self._idempotency.get(key) is entry:
                del self._idempotency[key]

    def _validate(self, data: dict[str, Any]) -> tuple[str, str] | None:
        """``(error name, message)`` for a payload Resend would refuse."""
        missing = self.missing_field_name
        sender = data.get("from")
        if not sender:
            return missing, "Missing `from` field."
        if not data.get("to"):
            return missing, "Missing `to` field."
        if not data.get("subject"):
            return missing, "Missing `subject` field."
        if not isinstance(sender, str) or not _ADDRESS.match(bare_address(sender)):
            return "validation_error", f"Invalid `from` field. {_ADDRESS_FORMAT}"
        if not isinstance(data["subject"], str):
            return "validation_error", "Invalid `subject` field. It must be a string."
        if len(_as_list(data["to"])) > _MAX_RECIPIENTS:
            return "validation_error", f"Too many recipients: `to` allows {_MAX_RECIPIENTS}."
        for field_name in ("to", "cc", "bcc", "reply_to"):
            for value in _as_list(data.get(field_name)):
                if not isinstance(value, str) or not _ADDRESS.match(bare_address(value)):
                    return "validation_error", f"Invalid `{field_name}` field. {_ADDRESS_FORMAT}"
                domain = bare_address(value).rpartition("@")[2].lower()
                if field_name != "reply_to" and (
                    domain == INVALID_DOMAIN or domain.endswith("." + INVALID_DOMAIN)
                ):
                    return (
                        "validation_error",
                        f"Invalid `{field_name}` field. The domain `{domain}` cannot "
                        "receive email.",
                    )
        for field_name in ("html", "text"):
            if data.get(field_name) is not None and not isinstance(data[field_name], str):
                return "validation_error", f"Invalid `{field_name}` field. It must be a string."
        tags = data.get("tags")
        if tags is not None:
            if not isinstance(tags, list):
                return "validation_error", "Invalid `tags` field. It must be an array."
            for tag in tags:
                if (
                    not isinstance(tag, dict)
                    or not _TAG_PART.match(str(tag.get("name", "")))
                    or not _TAG_PART.match(str(tag.get("value", "")))
                ):
                    return (
                        "validation_error",
                        "Tags should only contain ASCII letters, numbers, underscores, or dashes.",
                    )
        headers = data.get("headers")
        if headers is not None and (
            not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values())
        ):
            return "validation_error", "Invalid `headers` field. It must map names to strings."
        return None

    def _build_send(
        self,
        seq: int,
        request: WireRequest,
        data: dict[str, Any],
        to_addrs: list[str],
        key: str | None,
        step: Step | None,
    ) -> AcceptedSend:
        text = data.get("text")
        html = data.get("html")
        fault = (
            step.kind
            if step is not None and step.kind in ("timeout_after_accept", "drop_after_accept")
            else None
        )
        return AcceptedSend(
            seq=seq,
            provider=self.provider,
            id=str(uuid.uuid4()),
            to=to_addrs[0],
            recipients=to_addrs,
            from_=data["from"],
            body=text if text is not None else html,
            subject=data["subject"],
            html=html,
            idempotency_key=key,
            status_callback=None,
            messaging_service_sid=None,
            received_at=request.received_at,
            received_mono=request.received_mono,
            accepted_at=time.time(),
            fault=fault,
            payload=data,
            status=RESEND_TEST_ADDRESSES.get(to_addrs[0].lower(), "sent"),
            text=text,
        )

    def _resource(self, send: AcceptedSend) -> dict[str, Any]:
        data = send.payload
        created = datetime.fromtimestamp(send.accepted_at, UTC)
        return {
            "object": "email",
            "id": send.id,
            "to": _as_list(data.get("to")),
            "from": send.from_,
            "created_at": created.isoformat(),
            "subject": send.subject,
            "html": send.html,
            "text": send.text,
            "cc": _as_list(data.get("cc")) or [None],
            "bcc": _as_list(data.get("bcc")) or [None],
            "reply_to": _as_list(data.get("reply_to")) or [None],
            "last_event": send.status,
            "scheduled_at": data.get("scheduled_at"),
            "tags": data.get("tags") or [],
        }

    def _read(self, request: WireRequest, email_id: str | None) -> Reply | None:
        step = self._decide([], is_read=True)
        self._sleep(self._config.latency)
        if step is not None:
            if step.kind == "rate_limit":
                self._count(RATE_LIMITED, 429)
                return self._rate_limit_reply("rate_limit_exceeded", step.seconds)
            if step.kind == "error":
                self._count(SERVER_ERROR, step.status)
                return self._error_reply(step.status, step.code)
            if step.kind == "drop":
                self._count(DROPPED, 0)
                return None
        if email_id is None:
            return self._list(request)
        with self._lock:
            send = self._by_id.get(email_id)
            payload = self._resource(send) if send is not None else None
        if payload is None:
            self._count(NOT_FOUND, 404)
            return self._error_reply(404, "not_found", "Email not found")
        self._count(READ, 200)
        return Reply.json(200, payload)

    def _list(self, request: WireRequest) -> Reply:
        try:
            limit = min(100, max(1, int(request.arg("limit") or 20)))
        except ValueError:
            self._count(BAD_REQUEST, 422)
            return self._error_reply(422, "validation_error", "Invalid `limit` parameter.")
        after = request.arg("after")
        with self._lock:
            newest_first = list(reversed(self._sends))
            if after:
                ids = [s.id for s in newest_first]
                newest_first = newest_first[ids.index(after) + 1 :] if after in ids else []
            page = [self._resource(s) for s in newest_first[: limit + 1]]
        self._count(READ, 200)
        return Reply.json(
            200, {"object": "list", "has_more": len(page) > limit, "data": page[:limit]}
        )

    def _control_extra(self, request: WireRequest, name: str) -> Reply | None:
        if name == "status" and request.method == "POST":
            data = request.json() or {}
            send = self.set_status(str(data["id"]), str(data["last_event"]))
            return Reply.json(200, send.to_dict())
        if name == "info" and request.method == "GET":
            return Reply.json(200, {"api_key": self.api_key, "url": self.url})
        return None


def _as_list(value: Any) -> list[Any]:
    """Resend accepts a string or an array wherever it takes addresses."""
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list) else [value]


def _fingerprint(data: dict[str, Any]) -> str:
    """Order-insensitive digest of a JSON payload (key order is not meaning)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
