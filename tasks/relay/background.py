"""A daemon thread the relay starts once and stops on shutdown (listener, ticker)."""

from __future__ import annotations

import threading


class BackgroundLoop:
    """Runs `_run` in one daemon thread; `_stop` is set when it should finish."""

    thread_name = "relay-background"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _should_start(self) -> bool:
        return True

    def start(self) -> None:
        """Start the background thread (once)."""
        if self._thread is not None or not self._should_start():
            return
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to finish and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        raise NotImplementedError
