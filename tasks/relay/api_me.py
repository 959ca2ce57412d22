"""A signed-in customer's routes: GET /api/me/registrations and PATCH /api/me/registrations/{id}.

"Me" is the token's phone claim, matched in SQL the way the policies match
it; the policies, the column grant and the guard trigger decide the rest.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from db import front_door
from db.as_caller import Statement
from db.queries import query
from db.vocabulary import LANGUAGES, PREFERENCES
from tasks.relay.api_common import (
    Refusal,
    answer,
    as_the_caller,
    caller_claims,
    error,
    json_object,
    not_found,
    registration_id,
    scalar,
)

LIST_PATH = "/api/me/registrations"
ITEM_PATH = "/api/me/registrations/{id}"

#: What a customer may change, and the values each takes (the database's
#: lists, db.vocabulary). A new field is one entry here plus its line in
#: update_my_registration (sql/queries/front_door.sql).
EDITABLE: dict[str, tuple[str | None, ...]] = {
    "notification_pref": PREFERENCES,
    # NULL: the dealership's default language (notification_config.default_language).
    "language": (*LANGUAGES, None),
}


async def list_mine(request: Request) -> Response:
    """200 {"registrations": [...]}: stage with label and position, vehicle, preference."""
    return await answer(request, _list_mine)


async def _list_mine(request: Request) -> Response:
    claims = await caller_claims(request)
    [rows] = await as_the_caller(request, claims, Statement(query("my_registrations")))
    return JSONResponse({"registrations": scalar(rows)})


async def update_mine(request: Request) -> Response:
    """200 with the changed fields; 422 for an unknown field or value; 404 when not theirs."""
    return await answer(request, _update_mine)


async def _update_mine(request: Request) -> Response:
    claims = await caller_claims(request)
    reg = registration_id(request)
    body = await json_object(request, required=True)
    unknown = sorted(set(body) - set(EDITABLE))
    if unknown or not body:
        raise Refusal(error(422, "fields that can be changed: " + ", ".join(EDITABLE)))
    for name, value in body.items():
        if value not in EDITABLE[name]:
            allowed = ", ".join(repr(v) for v in EDITABLE[name])
            raise Refusal(error(422, f"{name} must be one of {allowed}"))
    [rows] = await as_the_caller(request, claims, Statement(
        query("update_my_registration"),
        front_door.update_params(reg, body, tuple(EDITABLE))))
    if not rows:
        raise not_found()
    return JSONResponse({key: str(value) if key == "id" else value
                         for key, value in rows[0].items()})
