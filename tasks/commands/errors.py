"""The one exception subcommands raise for a clean, traceback-free failure."""

from __future__ import annotations


class CommandError(RuntimeError):
    """A failure to report to a person in one line, with an exit status."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
