"""Drive a wire that lives in another process, through its ``/_wire/`` API.

A test that starts a wire in-process reads the Python object directly. This
client is for the other cases: a wire started with ``python -m tests.wire``
(benchmarks, manual runs), or a helper process in a reliability test that
must change the chaos knobs of a wire owned by the test process. The method
names mirror ``WireServer`` so code can take either.

Stdlib only (``urllib``), so it works in any process without the SDKs.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from ._core import CONTROL_PREFIX, AcceptedSend, Attempt


class WireControlError(RuntimeError):
    """The control API answered with an error status."""

    def __init__(self, status: int, payload: Any) -> None:
        """Keep the status and the decoded answer for the caller."""
        super().__init__(f"wire control API answered {status}: {payload!r}")
        self.status = status
        self.payload = payload


class RemoteWire:
    """Control-API client for a wire at ``url`` (e.g. ``http://127.0.0.1:8031``)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        """``timeout`` is the HTTP timeout per control call, in seconds."""
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(
        self,
        method: str,
        name: str,
        payload: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        url = f"{self.url}{CONTROL_PREFIX}{name}"
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                decoded: Any = json.loads(body)
            except ValueError:
                decoded = body.decode("utf-8", "replace")
            raise WireControlError(exc.code, decoded) from None

    def health(self) -> dict[str, Any]:
        """``{"ok": true, "provider": ..., "url": ...}``."""
        return self._call("GET", "health")

    def info(self) -> dict[str, Any]:
        """Provider credentials the wire accepts (Twilio sid/token, Resend key)."""
        return self._call("GET", "info")

    def config(self) -> dict[str, Any]:
        """Current chaos knobs."""
        return self._call("GET", "config")

    def configure(self, **values: Any) -> dict[str, Any]:
        """Same keywords as ``WireServer.configure``; returns the new knobs."""
        return self._call("POST", "config", values)

    def reset(self, config: bool = False) -> None:
        """Same as ``WireServer.reset``."""
        self._call("POST", "reset", {"config": config})

    def script(self, recipient: str, steps: Iterable[str]) -> dict[str, list[str]]:
        """Same grammar as ``WireServer.script``; returns pending scripts."""
        result = self._call("POST", "script", {"recipient": recipient, "steps": list(steps)})
        return result["pending"]

    def clear_scripts(self, recipient: str | None = None) -> None:
        """Drop pending scripts (all, or one recipient's)."""
        self._call("POST", "script", {"clear": True, "recipient": recipient})

    def pending_scripts(self) -> dict[str, list[str]]:
        """Steps not played yet, per recipient."""
        return self._call("GET", "script")["pending"]

    def rate_limit(
        self,
        count: int | None = None,
        seconds: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Same as ``WireServer.rate_limit``."""
        self._call(
            "POST", "rate_limit", {"count": count, "seconds": seconds, "retry_after": retry_after}
        )

    def sends(self, recipient: str | None = None, since: int = 0) -> list[AcceptedSend]:
        """Accepted sends, as ``AcceptedSend`` objects."""
        result = self._call("GET", "sends", query={"to": recipient, "since": since or None})
        return [AcceptedSend.from_dict(s) for s in result["sends"]]

    def accepted_count(self, recipient: str | None = None) -> int:
        """Number of accepted sends (optionally for one recipient)."""
        if recipient is None:
            return int(self.stats()["accepted"])
        return len(self.sends(recipient))

    def attempts(self, since: int = 0) -> list[Attempt]:
        """Every send request, accepted or not."""
        result = self._call("GET", "attempts", query={"since": since or None})
        return [Attempt.from_dict(a) for a in result["attempts"]]

    def stats(self) -> dict[str, Any]:
        """Counts by outcome and status."""
        return self._call("GET", "stats")

    def duplicates(self) -> list[list[AcceptedSend]]:
        """Groups of accepted sends with the same recipient and content."""
        groups = self._call("GET", "duplicates")["duplicates"]
        return [[AcceptedSend.from_dict(s) for s in group] for group in groups]

    def wait_for_sends(
        self, count: int, recipient: str | None = None, timeout: float = 10.0
    ) -> list[AcceptedSend]:
        """Block until ``count`` sends are accepted; ``TimeoutError`` if not."""
        payload = {"count": count, "recipient": recipient, "timeout": timeout}
        try:
            result = self._call("POST", "wait", payload, timeout=timeout + self.timeout)
        except WireControlError as exc:
            if exc.status == 408:
                raise TimeoutError(exc.payload.get("error", str(exc))) from None
            raise
        return [AcceptedSend.from_dict(s) for s in result["sends"]]

    def set_status(self, send_id: str, status: str, error_code: int | None = None) -> AcceptedSend:
        """Change what a later fetch reports: a Twilio message ``status`` (and
        ``error_code``) or a Resend ``last_event``."""
        provider = self.health()["provider"]
        if provider == "twilio":
            payload = {"sid": send_id, "status": status, "error_code": error_code}
        else:
            payload = {"id": send_id, "last_event": status}
        return AcceptedSend.from_dict(self._call("POST", "status", payload))
