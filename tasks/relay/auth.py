"""Bearer-token authentication for POST /tick."""

from __future__ import annotations

import hmac
from enum import Enum

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

REALM = "regnotify-relay"


class TokenCheck(Enum):
    """The outcome of checking a request's bearer token."""

    OK = "ok"
    MISSING = "missing"
    INVALID = "invalid"


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer ...` header, or None."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def check_token(request: Request, expected: str | None) -> TokenCheck:
    """Compare the request's bearer token with `expected` in constant time.

    `expected` None means the relay runs local-only without a token: anything
    that reaches the loopback port may tick.
    """
    if expected is None:
        return TokenCheck.OK
    given = bearer_token(request)
    if given is None:
        return TokenCheck.MISSING
    # compare_digest on bytes: on str it refuses non-ASCII, which a caller
    # could send to turn a wrong token into a 500.
    if hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        return TokenCheck.OK
    return TokenCheck.INVALID


def unauthorized(check: TokenCheck) -> Response:
    """401 with the WWW-Authenticate challenge RFC 6750 asks for."""
    if check is TokenCheck.MISSING:
        challenge = f'Bearer realm="{REALM}"'
        detail = "missing bearer token"
    else:
        challenge = f'Bearer realm="{REALM}", error="invalid_token"'
        detail = "invalid bearer token"
    return JSONResponse({"error": detail}, status_code=401,
                        headers={"WWW-Authenticate": challenge})
