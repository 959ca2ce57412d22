"""The relay's OpenAPI 3.1 document (GET /openapi.json), written out rather than inferred."""

from __future__ import annotations

from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from tasks.relay.openapi_api import api_paths, api_schemas, api_security_schemes
from tasks.relay.resend_webhooks import PATH as RESEND_PATH
from tasks.relay.twilio_webhooks import INBOUND_PATH, STATUS_PATH

_ERROR = {"$ref": "#/components/schemas/Error"}
_WEBHOOK_RESULT = {"$ref": "#/components/schemas/WebhookResult"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_FORBIDDEN = _json(_ERROR, "Missing or wrong signature; nothing was changed.")
_TOO_LARGE = _json(_ERROR, "Body over the relay's limit (RELAY_MAX_BODY_BYTES).")
_DB_DOWN = _json(_ERROR, "The database is unreachable; nothing was changed, retry later.")

_TWILIO_FORM_COMMON = {
    "MessageSid": {"type": "string", "description": "Twilio's message SID (SM...)."},
    "AccountSid": {"type": "string"},
    "From": {"type": "string", "description": "E.164 sender."},
    "To": {"type": "string", "description": "E.164 recipient."},
}


def build_openapi(version: str = "0.1.0") -> dict[str, Any]:
    """The document; every route of the app appears under `paths`."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "regnotify relay",
            "version": version,
            "description": (
                "Wakes the notification queue (POST /tick from pg_net, NOTIFY on "
                "notification_tick), takes the providers' signed delivery webhooks, and "
                "serves staff and customers under /api, each request run as its caller."
            ),
        },
        "paths": {
            "/tick": {"post": {
                "operationId": "tick",
                "summary": "Enqueue process_notification_queue (coalesced).",
                "description": (
                    "The request pg_net sends from notification_tick(): a JSON body, "
                    "Content-Type application/json, User-Agent pg_net/x. The body is "
                    "read (size-checked) but not interpreted; a malformed one is accepted."
                ),
                "security": [{"relayToken": []}],
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {"source": {"type": "string", "example": "pg_cron"},
                                   "at": {"type": "string", "format": "date-time"}},
                }}}},
                "responses": {
                    "202": _json({"$ref": "#/components/schemas/TickAccepted"},
                                 "A run was enqueued, or one already waiting covers this tick."),
                    "401": {**_json(_ERROR, "Missing or wrong bearer token."),
                            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}},
                    "413": _TOO_LARGE,
                    "503": _json(_ERROR, "The broker could not be reached."),
                },
            }},
            "/healthz": {"get": {
                "operationId": "healthz",
                "summary": "Whether the database and the broker answer (~2 s timeouts).",
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Health"}, "Both answer."),
                    "503": _json({"$ref": "#/components/schemas/Health"},
                                 "At least one does not; `failed` names it."),
                },
            }},
            "/metrics": {"get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics of this relay.",
                "responses": {"200": {"description": "Text exposition format.",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }},
            "/openapi.json": {"get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document.")},
            }},
            "/docs": {"get": {
                "operationId": "docs",
                "summary": "This document as a readable page (no external assets).",
                "responses": {"200": {"description": "HTML.",
                                      "content": {"text/html": {"schema": {"type": "string"}}}}},
            }},
            STATUS_PATH: {"post": {
                "operationId": "twilioStatus",
                "summary": "Twilio message status callback: moves the SMS delivery forward only.",
                "description": (
                    "queued < sending < sent < delivered; undelivered and failed are final "
                    "and keep ErrorCode. Duplicates and out-of-order callbacks change nothing. "
                    "Signed over RELAY_PUBLIC_URL + path (+ query) and the form parameters."
                ),
                "security": [{"twilioSignature": []}],
                "requestBody": {"required": True, "content": {
                    "application/x-www-form-urlencoded": {"schema": {
                        "type": "object",
                        "required": ["MessageSid", "MessageStatus"],
                        "properties": {
                            **_TWILIO_FORM_COMMON,
                            "MessageStatus": {"type": "string", "enum": [
                                "accepted", "scheduled", "queued", "sending", "sent",
                                "delivered", "read", "undelivered", "failed", "canceled"]},
                            "ErrorCode": {"type": "string", "example": "30003"},
                        },
                    }}}},
                "responses": {
                    "200": _json(_WEBHOOK_RESULT, "Applied, already applied, or unknown id."),
                    "403": _FORBIDDEN, "413": _TOO_LARGE, "503": _DB_DOWN,
                },
            }},
            INBOUND_PATH: {"post": {
                "operationId": "twilioInbound",
                "summary": "Inbound SMS: STOP-style keywords opt out, START-style opt back in.",
                "description": (
                    "STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT record an SMS opt-out and "
                    "drop SMS from the number's registrations (both -> email, sms -> none). "
                    "START, UNSTOP, YES lift the opt-out without changing preferences."
                ),
                "security": [{"twilioSignature": []}],
                "requestBody": {"required": True, "content": {
                    "application/x-www-form-urlencoded": {"schema": {
                        "type": "object",
                        "required": ["From", "Body"],
                        "properties": {**_TWILIO_FORM_COMMON, "Body": {"type": "string"}},
                    }}}},
                "responses": {
                    "200": {"description": "Empty TwiML.",
                            "content": {"text/xml": {"schema": {"type": "string",
                                                                "example": "<Response/>"}}}},
                    "403": _FORBIDDEN, "413": _TOO_LARGE, "503": _DB_DOWN,
                },
            }},
            RESEND_PATH: {"post": {
                "operationId": "resendEvents",
                "summary": "Resend e-mail events (Svix-signed), deduplicated by svix-id.",
                "description": (
                    "email.delivered, email.bounced, email.complained, email.failed move the "
                    "delivery found by data.email_id forward only; email.delivery_delayed is "
                    "noted in error_message. The signature is checked on the raw body with at "
                    "most 5 minutes of timestamp skew."
                ),
                "security": [{"svixSignature": []}],
                "parameters": [
                    {"name": "svix-id", "in": "header", "required": True,
                     "schema": {"type": "string"}},
                    {"name": "svix-timestamp", "in": "header", "required": True,
                     "schema": {"type": "string", "description": "Unix seconds."}},
                    {"name": "svix-signature", "in": "header", "required": True,
                     "schema": {"type": "string", "example": "v1,base64..."}},
                ],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["type", "data"],
                    "properties": {
                        "type": {"type": "string", "enum": [
                            "email.sent", "email.delivered", "email.bounced",
                            "email.complained", "email.failed", "email.delivery_delayed"]},
                        "created_at": {"type": "string", "format": "date-time"},
                        "data": {"type": "object", "properties": {
                            "email_id": {"type": "string"},
                            "bounce": {"type": "object"},
                            "failed": {"type": "object"},
                        }},
                    },
                }}}},
                "responses": {
                    "200": _json(_WEBHOOK_RESULT,
                                 "Applied, a replay, an ignored event type, or unknown id."),
                    "403": _FORBIDDEN, "413": _TOO_LARGE, "503": _DB_DOWN,
                },
            }},
            **api_paths(),
        },
        "components": {
            "securitySchemes": {
                "relayToken": {"type": "http", "scheme": "bearer",
                               "description": "RELAY_TOKEN, compared in constant time."},
                "twilioSignature": {
                    "type": "apiKey", "in": "header", "name": "X-Twilio-Signature",
                    "description": "HMAC-SHA1 with TWILIO_AUTH_TOKEN (Twilio's RequestValidator).",
                },
                "svixSignature": {
                    "type": "apiKey", "in": "header", "name": "svix-signature",
                    "description": "Svix HMAC-SHA256 with RESEND_WEBHOOK_SECRET (whsec_...).",
                },
                **api_security_schemes(),
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": {"type": "string"}}},
                "TickAccepted": {
                    "type": "object", "required": ["task_id", "coalesced"],
                    "properties": {
                        "task_id": {"type": ["string", "null"],
                                    "description": "Null when coalesced into a waiting run."},
                        "coalesced": {"type": "boolean"},
                    },
                },
                "Health": {
                    "type": "object", "required": ["database", "broker"],
                    "properties": {
                        "database": {"type": "string", "example": "ok"},
                        "broker": {"type": "string", "example": "ok"},
                        "listener": {"type": "string",
                                     "enum": ["connected", "disconnected", "off"]},
                        "ticker": {"type": "string", "enum": ["own", "cron", "starting", "off"]},
                        "coordination": {
                            "type": "string", "enum": ["redis", "postgresql"],
                            "description": "Where the workers share rate limits, the tick "
                                           "marker and the wake-up.",
                        },
                        "coordination_error": {"type": "string"},
                        "failed": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "WebhookResult": {
                    "type": "object",
                    "properties": {"result": {"type": "string", "enum": [
                        "moved", "noted", "unchanged", "unknown", "duplicate", "ignored"]}},
                },
                **api_schemas(),
            },
        },
    }


async def openapi_endpoint(request: Request) -> JSONResponse:
    """GET /openapi.json."""
    return JSONResponse(request.app.state.openapi)


def render_docs(doc: dict[str, Any]) -> str:
    """A plain HTML page of the document: Swagger UI would need assets from a CDN."""
    schemes = doc["components"]["securitySchemes"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{escape(doc['info']['title'])}</title></head><body>",
        f"<h1>{escape(doc['info']['title'])}</h1><p>{escape(doc['info']['description'])}</p>",
        "<p>Machine-readable: <a href='openapi.json'>openapi.json</a></p>",
    ]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            parts.append(f"<h2><code>{method.upper()} {escape(path)}</code></h2>")
            parts.append(f"<p>{escape(op.get('summary', ''))}</p>")
            if op.get("description"):
                parts.append(f"<p>{escape(op['description'])}</p>")
            for requirement in op.get("security", []):
                for name in requirement:
                    parts.append(f"<p>Auth: {escape(schemes[name].get('description', name))}</p>")
            codes = ", ".join(f"{code} {escape(r['description'])}"
                              for code, r in op["responses"].items())
            parts.append(f"<p>Responses: {codes}</p>")
    parts.append("</body></html>")
    return "".join(parts)


async def docs_endpoint(request: Request) -> HTMLResponse:
    """GET /docs."""
    return HTMLResponse(render_docs(request.app.state.openapi))
