"""The /api routes' part of the relay's OpenAPI document (merged by openapi.build_openapi)."""

from __future__ import annotations

from typing import Any

from db.vocabulary import SKIP_REASONS
from tasks.relay.api_me import EDITABLE, ITEM_PATH, LIST_PATH
from tasks.relay.api_registrations import NOTIFY_PATH, TIMELINE_PATH

_ERROR = {"$ref": "#/components/schemas/Error"}
_SECURITY = [{"callerJwt": []}]
_ID = [{"name": "id", "in": "path", "required": True,
        "schema": {"type": "string", "format": "uuid"},
        "description": "The registration's id (anything else is a 404)."}]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _common(*extra: str) -> dict[str, Any]:
    responses = {
        "401": _json(_ERROR, "Missing or invalid bearer token (WWW-Authenticate: Bearer "
                             'error="invalid_token"); the body does not say which check failed.'),
        "403": _json(_ERROR, "The database refused the caller (no grant, or its row-level "
                             "security)."),
        "404": _json(_ERROR, "No such registration, or none the caller may see."),
        "413": _json(_ERROR, "Body over the relay's limit (RELAY_MAX_BODY_BYTES)."),
        "422": _json(_ERROR, "A body that is not what the route takes."),
        "503": _json(_ERROR, "The database is unreachable; retry later."),
    }
    return {code: r for code, r in responses.items() if code in extra}


def api_paths() -> dict[str, Any]:
    return {
        NOTIFY_PATH: {"post": {
            "operationId": "requestNotification",
            "summary": "Send a message about the registration's current stage now (staff).",
            "description": "request_notification() as the caller: an admin's token or a "
                           "service_role token. The queue is woken at once.",
            "security": _SECURITY,
            "parameters": _ID,
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"bypass_quiet_hours": {"type": "boolean", "default": False}},
            }}}},
            "responses": {
                "200": _json({"$ref": "#/components/schemas/NotificationAnswer"},
                             "What will happen."),
                **_common("401", "403", "404", "413", "422", "503"),
            },
        }},
        TIMELINE_PATH: {"get": {
            "operationId": "notificationTimeline",
            "summary": "The registration's notification timeline, as the caller may see it.",
            "security": _SECURITY,
            "parameters": _ID,
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Timeline"}, "The timeline."),
                **_common("401", "403", "404", "503"),
            },
        }},
        LIST_PATH: {"get": {
            "operationId": "myRegistrations",
            "summary": "The signed-in customer's registrations (by the token's phone).",
            "security": _SECURITY,
            "responses": {
                "200": _json({"type": "object", "required": ["registrations"], "properties": {
                    "registrations": {"type": "array",
                                      "items": {"$ref": "#/components/schemas/MyRegistration"}},
                }}, "Their registrations (none for a token without a phone)."),
                **_common("401", "403", "503"),
            },
        }},
        ITEM_PATH: {"patch": {
            "operationId": "updateMyRegistration",
            "summary": "Change the customer's own notification preference or language.",
            "security": _SECURITY,
            "parameters": _ID,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "minProperties": 1,
                "properties": {name: {"enum": list(values)} for name, values in EDITABLE.items()},
            }}}},
            "responses": {
                "200": _json({"type": "object", "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    **{name: {"enum": list(values)} for name, values in EDITABLE.items()},
                }}, "Changed."),
                **_common("401", "403", "404", "413", "422", "503"),
            },
        }},
    }


def api_security_schemes() -> dict[str, Any]:
    return {"callerJwt": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "The caller's JWT: Supabase's (JWKS at SUPABASE_URL, or HS256 with "
                       "SUPABASE_JWT_SECRET) or regnotify's own (HS256 with SESSION_SECRET); "
                       "aud must be authenticated. The request runs as its role.",
    }}


def api_schemas() -> dict[str, Any]:
    return {
        "NotificationAnswer": {
            "type": "object", "required": ["queued"],
            "properties": {
                "queued": {"type": "boolean"},
                "channels": {"type": "array", "items": {"enum": ["sms", "email"]}},
                "reason": {"type": "string", "enum": list(SKIP_REASONS),
                           "description": "Why nothing was queued: the first channel's "
                                          "skip reason (preference: no channel chosen)."},
                "detail": {"type": "string"},
                "skipped": {"type": "array", "items": {"type": "object"}},
                "bypass_quiet_hours": {"type": "boolean"},
                "held_until": {"type": "string", "format": "date-time"},
                "held_until_local": {"type": "string", "example": "08:00"},
                "time_zone": {"type": "string", "example": "America/Chicago"},
                "held_channels": {"type": "array", "items": {"type": "string"}},
            },
        },
        "Timeline": {
            "type": "object", "required": ["registration_id", "events"],
            "properties": {
                "registration_id": {"type": "string", "format": "uuid"},
                "registration": {"type": "object"},
                "events": {"type": "array", "items": {
                    "type": "object", "required": ["kind", "at"],
                    "properties": {
                        "kind": {"type": "string", "enum": [
                            "stage_change", "message", "hold", "fallback",
                            "preference_change", "reply"]},
                        "at": {"type": "string", "format": "date-time"},
                    },
                }},
            },
        },
        "MyRegistration": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "stage": {"type": "string"},
                "stage_label": {"type": "string"},
                "stage_position": {"type": "integer"},
                "vehicle": {"type": "object"},
                "notification_pref": {"enum": list(EDITABLE["notification_pref"])},
                "language": {"enum": list(EDITABLE["language"]),
                             "description": "null: the dealership's default language"},
                "updated_at": {"type": "string", "format": "date-time"},
            },
        },
    }
