"""Every error regnotify raises on purpose, under one base (httpx's `_exceptions.py` style).

`db` cannot import `tasks`, so the base lives here; each subclass lives
beside the code that raises it and is listed here::

    RegnotifyError                  db.errors: base; `exit_code` for the CLI
    ├── DatabaseUnavailable         db.errors: DATABASE_URL unset, unusable or unreachable
    │   └── DatabaseNotMigrated     db.errors: reachable, but `regnotify migrate` never ran
    ├── MigrationError              db.errors: a migration cannot be applied
    ├── RelayConfigError            tasks.exceptions: the relay cannot run with these settings
    ├── ProviderConfigError         tasks.exceptions: half-filled provider credentials
    ├── InvalidToken                tasks.exceptions: an API bearer token that fails a check
    ├── CallerRoleRefused           db.errors: claims whose role the API never runs as
    ├── CallerNotAllowed            db.errors: the front door refused the caller (42501)
    ├── RegistrationNotFound        db.errors: no such registration, or not the caller's
    ├── CommandError                tasks.exceptions: a command refuses its input (own exit code)
    ├── LocalStackError             tasks.exceptions: `regnotify up`'s own servers
    │   ├── ServerBinariesError     no PostgreSQL/Redis binaries from the allowed source
    │   ├── EmbeddedPostgresError   the embedded PostgreSQL cannot start
    │   ├── EmbeddedRedisError      the embedded Redis cannot start
    │   └── StateFolderBusy         another `up` runs in this state folder
    └── ProviderError               tasks.providers.base: a provider call that did not end
                                    in an accepted message (transient, opt_out,
                                    outcome_unknown, retry_after)

Each message is one line naming the problem and the fix; tasks/cli/main.py main()
prints it and exits with `exit_code` (2), the one place that maps errors to
exit statuses. `database_problem()` turns SQLAlchemy's and psycopg's errors
into the family at that same place.

Not in the family, on purpose: control flow that never reaches a person
(tasks.relay.body_limit.BodyTooLarge and BodyTooSlow). A send that must wait
raises nothing: tasks.sending.delivery_flow returns an Outcome that says when to run
again.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

#: Where a person finds the right URL format.
URL_EXAMPLE = "postgresql://USER:PASSWORD@HOST:5432/DBNAME"


class RegnotifyError(Exception):
    """The base of every error regnotify raises on purpose; `str()` is one line for a person."""

    exit_code: int = 2


class DatabaseUnavailable(RegnotifyError):
    """The database cannot be used: DATABASE_URL unset, not a PostgreSQL URL, or unreachable."""


class DatabaseNotMigrated(DatabaseUnavailable):
    """The database answers but has no regnotify tables: `regnotify migrate` never ran."""


class MigrationError(RegnotifyError):
    """A migration cannot be applied; the message says why and what to do."""


class CallerNotAllowed(RegnotifyError):
    """The database refused the caller (SQLSTATE 42501): not staff, or not their row."""


class RegistrationNotFound(RegnotifyError):
    """No such registration, or none the caller may see (they cannot be told apart)."""


class CallerRoleRefused(RegnotifyError):
    """Claims whose `role` is not one the API runs as (anon, authenticated, service_role)."""


def check_database_url(database_url: str) -> None:
    """Raise DatabaseUnavailable unless the URL is a PostgreSQL URL we can drive."""
    try:
        url = make_url(database_url)
    except sa_exc.ArgumentError:
        raise DatabaseUnavailable(
            f"DATABASE_URL is not a database URL: set it to {URL_EXAMPLE}") from None
    backend = url.get_backend_name()
    if backend not in ("postgres", "postgresql"):
        raise DatabaseUnavailable(
            f"DATABASE_URL is a {backend} URL; regnotify needs PostgreSQL: "
            f"set it to {URL_EXAMPLE}")


def database_problem(error: BaseException) -> DatabaseUnavailable | None:
    """The family member a SQLAlchemy or psycopg error means, or None when it is not ours to say."""
    import psycopg

    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedFunction):
            return DatabaseNotMigrated(
                "the database has no regnotify tables (or an older set): "
                "run `regnotify migrate` first")
        if isinstance(cause, psycopg.OperationalError):
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else "no answer"
            return DatabaseUnavailable(
                f"cannot reach the database ({first[:200]}): is it running, and is "
                "DATABASE_URL right? (`regnotify up` starts one locally)")
        if isinstance(cause, sa_exc.NoSuchModuleError | sa_exc.ArgumentError):
            return DatabaseUnavailable(
                f"DATABASE_URL is not a PostgreSQL URL: set it to {URL_EXAMPLE}")
        cause = getattr(cause, "orig", None) or cause.__cause__
    return None
