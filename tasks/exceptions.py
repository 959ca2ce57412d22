"""The application's members of the error family; the tree, its base and the
database's members are in db/errors.py (db/ cannot import tasks/)."""

from __future__ import annotations

from db.errors import (
    BrokerUnavailable,
    ConfigurationError,
    DatabaseError,
    DatabaseNotMigrated,
    DatabaseUnavailable,
    MigrationError,
    RegnotifyError,
    StoreUnavailable,
)

__all__ = [
    "BrokerUnavailable",
    "CommandError",
    "ConfigurationError",
    "DatabaseError",
    "DatabaseNotMigrated",
    "DatabaseUnavailable",
    "EmbeddedPostgresError",
    "EmbeddedRedisError",
    "InvalidToken",
    "LocalStackError",
    "MigrationError",
    "ProviderConfigError",
    "ProviderError",
    "RegnotifyError",
    "RelayConfigError",
    "ServerBinariesError",
    "StateFolderBusy",
    "StoreUnavailable",
]


class RelayConfigError(ConfigurationError):
    """The relay cannot run with these settings (said in one line)."""


class ProviderConfigError(ConfigurationError):
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


class ProviderError(RegnotifyError):
    """A provider call that did not end in an accepted message.

    `transient` errors are retried; the rest fail the delivery at once.
    `outcome_unknown` means the provider may have accepted the message anyway
    (a timeout, a dropped connection, a 5xx), so a retry must check first.
    `rate_limited`: the provider refused for its request rate (HTTP 429), so
    the call was a wait for a slot, not a failed attempt (see delivery_flow).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        transient: bool,
        outcome_unknown: bool = False,
        retry_after: float | None = None,
        opt_out: bool = False,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.transient = transient
        self.outcome_unknown = outcome_unknown
        self.retry_after = retry_after
        self.opt_out = opt_out
        self.rate_limited = rate_limited
