"""A provider wrapper that times and counts every request (figures for /metrics)."""

from __future__ import annotations

import time

from tasks.coordination.worker_metrics import record_provider_call
from tasks.providers.base import ProviderError


class TimedProvider:
    """Wraps a provider adapter so every request to it is timed and counted."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.name: str = inner.name  # type: ignore[attr-defined]

    def __getattr__(self, attr: str) -> object:
        return getattr(self._inner, attr)

    def _timed(self, method: str, success: str, *args: object) -> object:
        started = time.perf_counter()
        try:
            result = getattr(self._inner, method)(*args)
        except ProviderError as exc:
            outcome = "retry" if exc.transient else "failed"
            record_provider_call(self.name, outcome, time.perf_counter() - started)
            raise
        record_provider_call(self.name, success, time.perf_counter() - started)
        return result

    def send(self, message: object) -> str:
        """The inner send, timed."""
        return str(self._timed("send", "sent", message))

    def find_sent(self, message: object, since: object, recorded: object = None) -> str | None:
        """The inner lookup, timed (SMS providers only)."""
        found = self._timed("find_sent", "lookup", message, since, recorded)
        return None if found is None else str(found)
