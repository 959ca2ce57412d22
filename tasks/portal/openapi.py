"""The customer page's routes as /openapi.json lists them (HTML forms, not an API)."""

from __future__ import annotations

from typing import Any

_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
_FORM = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
    "type": "object", "required": ["csrf"],
    "properties": {"csrf": {"type": "string", "description": "the page's CSRF token"}}}}}}


def _page(summary: str, codes: dict[str, str], form: bool = True) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": ["customer page"], "summary": summary,
        "responses": {code: {"description": text, **(_HTML if code != "303" else {})}
                      for code, text in codes.items()}}
    if form:
        operation["requestBody"] = _FORM
    return operation


PATHS: dict[str, Any] = {
    "/portal": {"get": _page(
        "The sign-in form, or the signed-in customer's registrations.",
        {"200": "The page (English or Spanish: ?lang=, its cookie, Accept-Language)."},
        form=False)},
    "/portal/portal.css": {"get": {"tags": ["customer page"], "summary": "The page's CSS.",
                                   "responses": {"200": {"description": "text/css"}}}},
    "/portal/code": {"post": _page(
        "Text a one-time code to `phone` (the same answer for any number).",
        {"200": "The code form.", "403": "No or wrong CSRF token.",
         "422": "Not a phone number.", "429": "Too many sends.",
         "503": "No sender configured, or it is unreachable."})},
    "/portal/sign-in": {"post": _page(
        "Check `code` for `phone`; a good one sets the session cookie.",
        {"303": "Signed in: back to /portal.", "401": "Wrong, used or expired code.",
         "403": "No or wrong CSRF token.", "429": "Too many checks of this code."})},
    "/portal/preference": {"post": _page(
        "Set `pref` (sms, email, both, none) of `registration_id`, as the customer.",
        {"303": "Saved (or not signed in): back to /portal.",
         "403": "No or wrong CSRF token.",
         "404": "Not a registration of this customer, or not a preference."})},
    "/portal/sign-out": {"post": _page(
        "Forget the session cookie.",
        {"303": "Signed out: back to /portal.", "403": "No or wrong CSRF token."})},
}
