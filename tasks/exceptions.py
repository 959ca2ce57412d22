"""The application side of the error family; the tree and its base are in db/errors.py.

ProviderError lives with the provider protocol (tasks/providers/base.py);
the database errors live in db/errors.py because db/ cannot import tasks/.
"""

from __future__ import annotations

from db.errors import (
    DatabaseNotMigrated,
    DatabaseUnavailable,
    MigrationError,
    RegnotifyError,
)

__all__ = [
    "CommandError",
    "DatabaseNotMigrated",
    "DatabaseUnavailable",
    "EmbeddedPostgresError",
    "EmbeddedRedisError",
    "InvalidToken",
    "LocalStackError",
    "MigrationError",
    "ProviderConfigError",
    "RegnotifyError",
    "RelayConfigError",
    "ServerBinariesError",
    "StateFolderBusy",
]


class RelayConfigError(RegnotifyError):
    """The relay cannot run with these settings (said in one line)."""


class ProviderConfigError(RegnotifyError):
    """Provider settings that cannot work, said in one line naming what is missing."""


class CommandError(RegnotifyError):
    """A command refuses its input or its situation; carries its own exit status."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class LocalStackError(RegnotifyError):
    """`regnotify up`'s own PostgreSQL or Redis cannot be found or started."""


class ServerBinariesError(LocalStackError):
    """No binaries from the allowed source(s); the message says what to install."""


class EmbeddedPostgresError(LocalStackError):
    """The private cluster could not be created or started."""


class StateFolderBusy(LocalStackError):
    """Another `regnotify up` holds this state folder (its pid is in the message)."""


class EmbeddedRedisError(LocalStackError):
    """The private Redis could not be started."""


class InvalidToken(RegnotifyError):
    """A bearer token that cannot be trusted (the API answers 401 without saying why)."""
