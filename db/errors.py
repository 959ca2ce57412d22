"""Every error regnotify raises on purpose, under one base (httpx's `_exceptions.py` style).

`db` cannot import `tasks`, so the base and every member the database layer
raises live here; the application's members live in tasks.exceptions. The
whole family::

    RegnotifyError                  db.errors: base; `exit_code` for the CLI
    ├── ConfigurationError          db.errors: a setting that cannot work (also a ValueError)
    │   ├── RelayConfigError        tasks.exceptions: the relay cannot run with these settings
    │   └── ProviderConfigError     tasks.exceptions: missing or half-filled provider
    │                               credentials (Twilio, Twilio Verify, Resend)
    ├── DatabaseError               db.errors: the database (or SQLAlchemy on its behalf) did
    │   │                           not do what was asked; `sqlstate` when the server said why
    │   ├── DatabaseUnavailable     db.errors: DATABASE_URL unset, unusable or unreachable,
    │   │   │                       the server busy, or no pooled connection free in time
    │   │   └── DatabaseNotMigrated db.errors: reachable, but `regnotify migrate` never ran
    │   ├── CallerNotAllowed        db.errors: no grant, or row-level security said no (42501)
    │   ├── RegistrationNotFound    db.errors: no such registration, or not the caller's (P0002)
    │   └── ValueRefused            db.errors: a constraint refused a value (class 23)
    ├── StoreUnavailable            db.errors: the coordination store (Redis, or its tables
    │                               in PostgreSQL) cannot be used; every engine raises it
    ├── BrokerUnavailable           db.errors: the Celery broker cannot be reached
    │   └── PublishUncertain        db.errors: a pipelined publish failed midway: some tasks
    │                               may be queued, some not
    ├── MigrationError              db.errors: a migration cannot be applied
    ├── CallerRoleRefused           db.errors: claims whose role the API never runs as
    ├── CommandError                tasks.exceptions: a command refuses its input (own exit code)
    ├── InvalidToken                tasks.exceptions: an API bearer token that fails a check
    ├── LocalStackError             tasks.exceptions: `regnotify up`'s own servers
    │   ├── ServerBinariesError     no PostgreSQL/Redis binaries from the allowed source
    │   ├── EmbeddedPostgresError   the embedded PostgreSQL cannot start
    │   ├── EmbeddedRedisError      the embedded Redis cannot start
    │   └── StateFolderBusy         another `up` runs in this state folder
    └── ProviderError               tasks.exceptions: a provider call that did not end in an
                                    accepted message (transient, opt_out, outcome_unknown,
                                    retry_after); the provider protocol, tasks.providers.base,
                                    re-exports it

Driver errors (psycopg, psycopg_pool, SQLAlchemy, redis, kombu, the socket
layer) become members of the family in one place: db.connector.family_error,
used at the edges through db.connector.family_errors. The CLI, the relay's
API, its webhooks, the staff console and the migrations catch members, never
driver classes (tests/test_connector_excepts.py keeps it so). Tasks keep
driver errors unmapped inside: Celery retries them (db.connector.BRIEFLY_AWAY).

Each message is one line naming the problem and the fix, without secrets (a
password in a URL is masked); tasks/cli/main.py main() prints it and exits
with `exit_code` (2), the one place that maps errors to exit statuses.

Not in the family, on purpose: control flow that never reaches a person
(tasks.relay.body_limit.BodyTooLarge and BodyTooSlow, tasks.relay.api_common.Refusal,
tasks.staff.pages.BadInput). A send that must wait raises nothing:
tasks.sending.delivery_flow returns an Outcome that says when to run again.
"""

from __future__ import annotations


class RegnotifyError(Exception):
    """The base of every error regnotify raises on purpose; `str()` is one line for a person."""

    exit_code: int = 2


class ConfigurationError(RegnotifyError, ValueError):
    """A setting that cannot work, said in one line naming it and the fix.

    Also a ValueError: the provider adapters raised plain ValueErrors for
    missing credentials before, and a caller may still catch those.
    """


class DatabaseError(RegnotifyError):
    """The database did not do what was asked.

    `sqlstate` is the server's code when it answered with one (None for a
    lost connection or SQLAlchemy's own errors); `detail` is the driver's own
    text, secrets masked, for messages that quote it; `constraint` the
    constraint the server named (a refused value's), else None.
    """

    def __init__(self, message: str, *, sqlstate: str | None = None,
                 detail: str | None = None, constraint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.detail = message if detail is None else detail
        self.constraint = constraint


class DatabaseUnavailable(DatabaseError):
    """The database cannot be used: DATABASE_URL unset, not a PostgreSQL URL, or unreachable."""


class DatabaseNotMigrated(DatabaseUnavailable):
    """The database answers but has no regnotify tables: `regnotify migrate` never ran."""


class CallerNotAllowed(DatabaseError):
    """The database refused the caller (SQLSTATE 42501): not staff, or not their row."""


class RegistrationNotFound(DatabaseError):
    """No such registration, or none the caller may see (they cannot be told apart)."""


class ValueRefused(DatabaseError):
    """A constraint refused a value (SQLSTATE class 23: unique, check, foreign key, not null)."""


class StoreUnavailable(RegnotifyError):
    """The coordination store did not answer, or answered with an error.

    The one class for every engine (tasks.coordination.store re-exports it):
    Redis's errors mean it through the connector; the PostgreSQL engine
    raises it for any DatabaseError, chained to it.
    """


class BrokerUnavailable(RegnotifyError):
    """The Celery broker cannot be reached: a task was not published."""

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = message if detail is None else detail


class PublishUncertain(BrokerUnavailable):
    """A batch of tasks failed midway through its flush: some may be queued and some not.

    Publishing them again one by one is safe (a task sent twice finds its
    delivery done or leased).
    """


class MigrationError(RegnotifyError):
    """A migration cannot be applied; the message says why and what to do."""


class CallerRoleRefused(RegnotifyError):
    """Claims whose `role` is not one the API runs as (anon, authenticated, service_role)."""

