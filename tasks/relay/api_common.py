"""What every /api route shares: the caller's verified claims, one transaction as
the caller in one round trip (db.as_caller.run_as_caller), and the database's
answers turned into HTTP.

No authorization decision is made here: the token is verified, then the
database's grants and row-level security decide, and their refusals are
mapped to 403/404.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from db.as_caller import Rows, Statement, run_as_caller
from db.connector import family_errors
from db.errors import (
    CallerNotAllowed,
    CallerRoleRefused,
    DatabaseUnavailable,
    RegistrationNotFound,
    ValueRefused,
)
from tasks.auth.verified_claims import verified_claims
from tasks.exceptions import InvalidToken
from tasks.relay.auth import bearer_token
from tasks.relay.runtime import Relay

log = logging.getLogger(__name__)

#: The same answer whichever check failed: the log line says which.
INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'
MISSING_TOKEN_CHALLENGE = 'Bearer realm="regnotify"'


class Refusal(Exception):
    """Control flow: a route stops with this response (never reaches a person as text)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def not_found() -> Refusal:
    return Refusal(error(404, "no such registration"))


def registration_id(request: Request) -> str:
    """The path's id in canonical form; anything that is not a uuid is simply not found."""
    try:
        return str(uuid.UUID(request.path_params["id"]))
    except ValueError:
        raise not_found() from None


async def json_object(request: Request, *, required: bool) -> dict[str, Any]:
    """The body as a JSON object ({} when empty and not required); 422 otherwise."""
    raw = await request.body()
    if not raw.strip() and not required:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Refusal(error(422, "the body must be a JSON object")) from None
    if not isinstance(body, dict):
        raise Refusal(error(422, "the body must be a JSON object"))
    return body


async def caller_claims(request: Request) -> dict[str, Any]:
    """The verified claims of the request's bearer token; a 401 Refusal otherwise."""
    relay: Relay = request.app.state.relay
    token = bearer_token(request)
    if token is None:
        log.info("API %s %s: 401, no bearer token", request.method, request.url.path)
        raise Refusal(error(401, "a bearer token is required",
                            {"WWW-Authenticate": MISSING_TOKEN_CHALLENGE}))
    try:
        return await verified_claims(token, relay.settings)
    except InvalidToken as exc:
        log.warning("API %s %s: 401, token refused (%s)", request.method, request.url.path,
                    exc)
        raise Refusal(error(401, "invalid bearer token",
                            {"WWW-Authenticate": INVALID_TOKEN_CHALLENGE})) from None


async def as_the_caller(request: Request, claims: dict[str, Any],
                        *statements: Statement) -> list[Rows]:
    """Run `statements` in one transaction as the caller (one round trip); their rows.

    The database's refusals, as the connector names them, become Refusals:
    CallerNotAllowed (no grant, or row-level security) 403, RegistrationNotFound
    (the functions' "not found") 404, ValueRefused (a constraint) 422,
    DatabaseUnavailable 503. Any other database error is the server's 500.
    """
    relay: Relay = request.app.state.relay
    try:
        with family_errors():
            return await run_as_caller(relay.caller_pool(), claims, statements)
    except CallerRoleRefused:
        raise Refusal(error(401, "invalid bearer token",
                            {"WWW-Authenticate": INVALID_TOKEN_CHALLENGE})) from None
    except DatabaseUnavailable as exc:
        log.warning("API %s %s: 503, database unavailable (%s)", request.method,
                    request.url.path, (exc.detail.splitlines() or [""])[0][:200])
        raise Refusal(error(503, "database unavailable", {"Retry-After": "5"})) from None
    except CallerNotAllowed:
        raise Refusal(error(403, "not allowed")) from None
    except RegistrationNotFound:
        raise not_found() from None
    except ValueRefused:
        raise Refusal(error(422, "the database refused this value")) from None


def scalar(rows: Rows) -> Any:
    """The first column of the first row (None without rows)."""
    return next(iter(rows[0].values())) if rows else None


async def answer(request: Request, route: Callable[[Request], Any]) -> Response:
    """Run a route body, turning a Refusal into its response."""
    try:
        return await route(request)
    except Refusal as refusal:
        return refusal.response
