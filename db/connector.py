"""The connector: where a driver's exception becomes a member of the error family, once.

psycopg (and its pool), SQLAlchemy, redis, kombu and the socket layer each
raise their own classes; `family_error` is the one function that knows them
all and says which member of the family (db/errors.py) each one means. Edges
(the CLI, the relay's API and webhooks, the staff console, the migrations)
wrap their work in `family_errors()` and catch members:

    try:
        with family_errors():
            rows = run(...)
    except CallerNotAllowed:
        ...

`family_errors` is also a decorator for plain functions. Inside a Celery task
driver errors stay as they are: BRIEFLY_AWAY lists the ones the task retries.
A task that handles one member itself maps just that one
(`family_errors(only=(PublishUncertain,))`); every other driver error leaves
unmapped, for Celery's retry.

The mapping, by the driver's class (the first match wins)::

    a member of the family already          itself
    psycopg UndefinedTable/UndefinedFunction DatabaseNotMigrated
    psycopg_pool PoolTimeout, SQLAlchemy's
      pool TimeoutError                      DatabaseUnavailable (no connection free)
    psycopg OperationalError/InterfaceError,
      SQLAlchemy DisconnectionError          DatabaseUnavailable
    SQLSTATE 42501                           CallerNotAllowed
    SQLSTATE P0002                           RegistrationNotFound
    SQLSTATE class 23                        ValueRefused
    any other psycopg or SQLAlchemy error    DatabaseError (`sqlstate` when the server gave one)
    SQLAlchemy ArgumentError/NoSuchModule    DatabaseUnavailable (not a PostgreSQL URL)
    redis RedisError                         StoreUnavailable
    kombu BatchPublishError                  PublishUncertain (a BrokerUnavailable)
    kombu/amqp connection or channel errors  BrokerUnavailable
    ConnectionError, TimeoutError, gaierror  the `network` member the edge names (else none)

SQLAlchemy's wrappers are read through to the psycopg error they carry. Messages
are one line and never carry a password: URLs and `password=` are masked.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import redis
from kombu import exceptions as kombu_exc
from psycopg_pool import PoolTimeout
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from db.errors import (
    BrokerUnavailable,
    CallerNotAllowed,
    DatabaseError,
    DatabaseNotMigrated,
    DatabaseUnavailable,
    PublishUncertain,
    RegistrationNotFound,
    RegnotifyError,
    StoreUnavailable,
    ValueRefused,
)

#: Where a person finds the right URL format.
URL_EXAMPLE = "postgresql://USER:PASSWORD@HOST:5432/DBNAME"

#: The database, the store or the broker briefly away (a restart, a failover,
#: a full pool): running the same idempotent work again later is safe. The
#: worker's tasks retry these (tasks/worker/infrastructure_retry.py).
BRIEFLY_AWAY: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    # The pool had no connection free within its timeout: the database is
    # busy, not the task wrong.
    sa_exc.TimeoutError,
    psycopg.OperationalError,
    redis.ConnectionError,
    redis.TimeoutError,
    kombu_exc.OperationalError,
)

#: kombu 5.7's "a pipelined flush failed, delivery uncertain"; older kombu
#: (celery 5.4 allows it) publishes one message at a time and has no such class.
_BATCH_PUBLISH: tuple[type[BaseException], ...] = tuple(
    cls for cls in (getattr(kombu_exc, "BatchPublishError", None),) if cls is not None)

#: The broker's failures (a publish that did not happen); serialization
#: errors are not among them: they are a bug, not the broker being away.
_BROKER_ERRORS: tuple[type[BaseException], ...] = (
    kombu_exc.OperationalError,
    kombu_exc.ConnectionError,  # amqp's, re-exported by kombu
    kombu_exc.ChannelError,
    kombu_exc.LimitExceeded,
    *_BATCH_PUBLISH,
)

#: The socket layer, for edges that know which service they were talking to.
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError,
                                                    socket.gaierror)

#: What `family_errors` catches to map; anything else passes through untouched.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.Error, sa_exc.SQLAlchemyError, redis.RedisError, *_BROKER_ERRORS,
    *_NETWORK_ERRORS)

_HINT = "is it running, and is DATABASE_URL right? `regnotify up` starts one locally"
_URL_PASSWORD = re.compile(r"(?<=://)([^/@\s:]*):[^@\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def masked(text: str) -> str:
    """`text` with any password in a URL or a `password=` keyword replaced by ***."""
    return _KEYWORD_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", text))


def first_line(error: BaseException | str, limit: int = 200) -> str:
    """The first non-empty line of an error's text, masked and cut to `limit` characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return masked(lines[0])[:limit] if lines else "no answer"


def redacted(database_url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return "(not a URL)"


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


def family_error(error: BaseException, *, database_url: str | None = None,
                 network: type[RegnotifyError] | None = None) -> RegnotifyError | None:
    """The member of the family `error` means; None when it is not a driver's error.

    `database_url` is named (password hidden) in a DatabaseUnavailable's
    message; `network` is the member a bare socket error becomes (the edge
    knows whom it was talking to). A wrapper that is none of ours (an error
    raised `from` a driver's) is read through its cause.
    """
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        found = _member(cause, database_url, network)
        if found is not None:
            return found
        cause = cause.__cause__
    return None


@contextmanager
def family_errors(*, database_url: str | None = None,
                  network: type[RegnotifyError] | None = None,
                  only: tuple[type[RegnotifyError], ...] | None = None) -> Iterator[None]:
    """Raise the family's member for any driver error inside (chained to it); the rest as is.

    `only`: map just the driver errors that mean one of these members (and
    their subclasses); any other leaves as the driver raised it (inside a
    task, whose retry knows the driver's classes: BRIEFLY_AWAY).
    """
    try:
        yield
    except DRIVER_ERRORS as exc:
        problem = family_error(exc, database_url=database_url, network=network)
        if problem is None or (only is not None and not isinstance(problem, only)):
            raise
        raise problem from exc


def briefly_away(error: BaseException) -> bool:
    """Whether `error` is one of the driver errors that mean "try again shortly"."""
    return isinstance(error, BRIEFLY_AWAY)


def _member(error: BaseException, database_url: str | None,
            network: type[RegnotifyError] | None) -> RegnotifyError | None:
    if isinstance(error, RegnotifyError):
        return error
    if isinstance(error, sa_exc.DBAPIError) and isinstance(error.orig, psycopg.Error):
        return _database(error.orig, database_url)
    if isinstance(error, psycopg.Error):
        return _database(error, database_url)
    if isinstance(error, sa_exc.TimeoutError):
        return _no_connection_free(error)
    if isinstance(error, sa_exc.DisconnectionError | sa_exc.OperationalError
                  | sa_exc.InterfaceError):
        return _unreachable(error, database_url)
    if isinstance(error, sa_exc.NoSuchModuleError | sa_exc.ArgumentError):
        # Their text may quote the URL: said in our words only.
        return DatabaseUnavailable(
            f"DATABASE_URL is not a PostgreSQL URL: set it to {URL_EXAMPLE}")
    if isinstance(error, sa_exc.SQLAlchemyError):
        return DatabaseError(
            f"the database layer failed ({type(error).__name__}: {first_line(error)})",
            detail=masked(str(error).strip()))
    if isinstance(error, redis.RedisError):
        return StoreUnavailable(
            f"the coordination store (Redis) failed ({type(error).__name__}: "
            f"{first_line(error)}): is it running, and is its URL right?")
    if isinstance(error, _BATCH_PUBLISH):
        return PublishUncertain(
            f"a batch of tasks failed midway ({first_line(error)}): some may be queued",
            detail=masked(str(error).strip()))
    if isinstance(error, _BROKER_ERRORS):
        return BrokerUnavailable(
            f"cannot reach the broker ({first_line(error)}): is it running, and is "
            "CELERY_BROKER_URL right?", detail=masked(str(error).strip()))
    if network is not None and isinstance(error, _NETWORK_ERRORS):
        return network(f"no answer ({type(error).__name__}: {first_line(error)})")
    return None


def _database(error: psycopg.Error, database_url: str | None) -> DatabaseError:
    state = error.sqlstate
    detail = masked(str(error).strip())
    constraint = error.diag.constraint_name if state is not None else None
    if isinstance(error, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedFunction):
        return DatabaseNotMigrated(
            "the database has no regnotify tables (or an older set): "
            "run `regnotify migrate` first", sqlstate=state, detail=detail)
    if isinstance(error, PoolTimeout):
        return _no_connection_free(error)
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return _unreachable(error, database_url)
    if state == "42501":  # no grant, row-level security, or a function's own refusal
        return CallerNotAllowed(first_line(error), sqlstate=state, detail=detail)
    if state == "P0002":  # our functions' "no such registration (for you)"
        return RegistrationNotFound(first_line(error), sqlstate=state, detail=detail)
    if state is not None and state.startswith("23"):
        return ValueRefused(f"the database refused this value ({first_line(error)})",
                            sqlstate=state, detail=detail, constraint=constraint)
    return DatabaseError(
        f"the database refused a statement ({state or type(error).__name__}: "
        f"{first_line(error)})", sqlstate=state, detail=detail, constraint=constraint)


def _unreachable(error: BaseException, database_url: str | None) -> DatabaseUnavailable:
    inner = getattr(error, "orig", None) or error
    state = getattr(inner, "sqlstate", None)
    detail = masked(str(inner).strip())
    if database_url:
        return DatabaseUnavailable(
            f"database {redacted(database_url)}: {first_line(inner)} ({_HINT})",
            sqlstate=state, detail=detail)
    return DatabaseUnavailable(
        f"cannot reach the database ({first_line(inner)}): {_HINT}",
        sqlstate=state, detail=detail)


def _no_connection_free(error: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"no database connection free in time ({first_line(error)}): the database is "
        "slow or busy; try again", detail=masked(str(error).strip()))
