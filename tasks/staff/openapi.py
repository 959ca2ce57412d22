"""The staff console's routes as /openapi.json lists them (HTML pages and forms, not an API)."""

from __future__ import annotations

from typing import Any

_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
_FORM = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
    "type": "object", "required": ["csrf"],
    "properties": {"csrf": {"type": "string", "description": "the page's CSRF token"}}}}}}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_SIGNED_IN = {"200": "The page.", "403": "Not an active staff member (a customer, a removed "
              "member): the sign-in form.", "503": "The database is unavailable."}
_ACTION = {"303": "Done: back to the page.", "403": "No or wrong CSRF token, another site, "
           "or not an active staff member."}


def _op(summary: str, codes: dict[str, str], *, form: bool, path_id: bool = False
        ) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": ["staff console"], "summary": summary,
        "responses": {code: {"description": text, **(_HTML if code != "303" else {})}
                      for code, text in codes.items()}}
    if form:
        operation["requestBody"] = _FORM
    if path_id:
        operation["parameters"] = _ID
    return operation


PATHS: dict[str, Any] = {
    "/staff": {"get": _op("Messages, newest first (keyset pages); search and filters; the "
                          "sign-in form when not signed in.",
                          {**_SIGNED_IN, "400": "A date out of range or not YYYY-MM-DD, or "
                                                "a page address the console did not make."},
                          form=False)},
    "/staff/staff.css": {"get": {"tags": ["staff console"], "summary": "The console's CSS.",
                                 "responses": {"200": {"description": "text/css"}}}},
    "/staff/code": {"post": _op("E-mail a one-time code to `email` when it is an active "
                                "member (the same answer and time for any address).",
                                {"200": "The code form.", "403": "No or wrong CSRF token.",
                                 "422": "Not an e-mail address.", "429": "Too many sends.",
                                 "503": "No sender configured, or it is unreachable."},
                                form=True)},
    "/staff/sign-in": {"post": _op("Check `code` for `email`; a good one sets the session "
                                   "cookie.", {"303": "Signed in.", "401": "Wrong or used code.",
                                               "403": "No or wrong CSRF token.",
                                               "429": "Too many checks."}, form=True)},
    "/staff/sign-out": {"post": _op("Forget the session cookie.",
                                    {"303": "Signed out.", "403": "No or wrong CSRF token."},
                                    form=True)},
    "/staff/registrations/{id}": {"get": _op(
        "A registration: contact, preference, language, zone and its timeline.",
        {**_SIGNED_IN, "404": "No such registration."}, form=False, path_id=True)},
    "/staff/registrations/{id}/send": {"post": _op(
        "Send the current stage now (`bypass=1`: even in quiet hours).", _ACTION, form=True,
        path_id=True)},
    "/staff/registrations/{id}/silence": {"post": _op(
        "Silence the next stage change.", _ACTION, form=True, path_id=True)},
    "/staff/deliveries/{id}/resend": {"post": _op(
        "Re-send a failed delivery (as retry-failed does).",
        {**_ACTION, "400": "The id is not a delivery's number (digits, below 2^63)."},
        form=True, path_id=True)},
    "/staff/handled": {"post": _op("Mark a delivery or a reply (`kind`, `id`) handled.",
                                   {**_ACTION, "400": "The id is not a number below 2^63."},
                                   form=True)},
    "/staff/attention": {"get": _op("What needs attention.", _SIGNED_IN, form=False)},
    "/staff/replies": {"get": _op("Replies grouped by number (`show`: open, handled, all).",
                                  _SIGNED_IN, form=False)},
    "/staff/queue": {"get": _op("Bursts waiting and messages held for quiet hours.",
                                _SIGNED_IN, form=False)},
}
