"""The customer page's routes: sign in by code, see the registrations, set the preference."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from db import customer_subjects
from db.connector import family_errors
from db.errors import DatabaseError
from tasks.auth.verified_claims import verify_cached
from tasks.exceptions import InvalidToken
from tasks.masking import mask_phone
from tasks.portal import data
from tasks.portal.i18n import LANGUAGES, Words, pick_language
from tasks.portal.phone import PhoneProblem, display_phone, normalize_phone, read_phone, tel_href
from tasks.portal.signin import SESSION_TTL_S, Outcome, Result, Sender, own_session
from tasks.portal.state import CSRF_COOKIE, LANG_COOKIE, SESSION_COOKIE, Portal, portal_for

log = logging.getLogger(__name__)

BASE = "/portal"
#: Every answer to "text me a code" takes at least this long, so the time
#: says nothing about the number (or about what the sender answered).
SEND_FLOOR_S = 1.0
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}
_HERE = Path(__file__).parent
_CSS = (_HERE / "portal.css").read_bytes()
_env = Environment(loader=FileSystemLoader(_HERE / "templates"),
                   autoescape=select_autoescape(["j2"]), trim_blocks=True, lstrip_blocks=True)


def _words(request: Request) -> Words:
    return Words(pick_language(request.query_params.get("lang"),
                               request.cookies.get(LANG_COOKIE),
                               request.headers.get("accept-language")))


def _render(request: Request, portal: Portal, template: str, status: int = 200,
            **ctx: Any) -> HTMLResponse:
    session = _session(portal, request)
    nonce = request.cookies.get(portal.cookie_name(CSRF_COOKIE))
    # Never adopt a nonce the server did not make (see Portal.csrf_token).
    fresh = not session and not portal.nonce_ok(nonce)
    if fresh:
        nonce = portal.new_nonce()
    words: Words = ctx.pop("w", None) or _words(request)
    html = _env.get_template(template).render(
        w=words, base=BASE, csrf=portal.csrf_token(session=session, nonce=nonce),
        dealership=_brand(portal, words), **ctx)
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    if fresh:
        _cookie(response, portal, CSRF_COOKIE, str(nonce), None)
    lang = request.query_params.get("lang")
    if lang in LANGUAGES:
        _cookie(response, portal, LANG_COOKIE, lang, 365 * 86400)
    return response


def _brand(portal: Portal, words: Words) -> str:
    """DEALERSHIP_NAME; left at its default, the page's own words for "your dealership"."""
    name = portal.settings.dealership_name
    default = type(portal.settings).model_fields["dealership_name"].default
    return words("default_brand") if name == default else name


def _cookie(response: Response, portal: Portal, key: str, value: str,
            max_age: int | None) -> None:
    response.set_cookie(portal.cookie_name(key), value, max_age=max_age,
                        path=portal.cookie_path(key), httponly=True, samesite="lax",
                        secure=portal.secure_cookies)


def _forget(response: Response, portal: Portal, key: str) -> None:
    response.delete_cookie(portal.cookie_name(key), path=portal.cookie_path(key), httponly=True,
                           samesite="lax", secure=portal.secure_cookies)


def _redirect(portal: Portal, to: str = BASE) -> Response:
    return RedirectResponse(to, status_code=303, headers=HEADERS)


def _claims(portal: Portal, request: Request) -> dict[str, Any] | None:
    """The verified claims of the session cookie, when it holds a customer's."""
    if hasattr(request.state, "portal_claims"):  # checked once per request
        return request.state.portal_claims  # type: ignore[no-any-return]
    request.state.portal_claims = None
    token = request.cookies.get(portal.cookie_name(SESSION_COOKIE))
    if not token:
        return None
    try:
        claims = verify_cached(token, portal.settings)
    except InvalidToken as exc:
        log.info("portal: session cookie refused (%s)", str(exc)[:120])
        return None
    if claims.get("role") != "authenticated" or not claims.get("phone"):
        return None
    request.state.portal_claims = claims
    return claims


def _session(portal: Portal, request: Request) -> str | None:
    """The session cookie when it holds a valid customer session (CSRF binds to it)."""
    if _claims(portal, request) is None:
        return None
    return request.cookies.get(portal.cookie_name(SESSION_COOKIE))


async def _form(request: Request, portal: Portal) -> dict[str, str] | None:
    """The posted form when its CSRF token matches this browser's cookie; else None."""
    body = (await request.body()).decode("utf-8", "replace")
    form = {k: v[0] for k, v in parse_qs(body).items()}
    if not portal.csrf_ok(session=_session(portal, request),
                          nonce=request.cookies.get(portal.cookie_name(CSRF_COOKIE)),
                          given=form.get("csrf")):
        return None
    return form


def _refused(request: Request, portal: Portal) -> Response:
    words = _words(request)
    return _render(request, portal, "signin.html.j2", 403, w=words,
                   configured=portal.sender is not None, phone=None,
                   error=words("signin.form_expired"))


async def page(request: Request) -> Response:
    """GET /portal: the sign-in form, or the customer's registrations."""
    portal = portal_for(request)
    claims = _claims(portal, request)
    if claims is None:
        words = _words(request)
        expired = bool(request.cookies.get(portal.cookie_name(SESSION_COOKIE)))
        response = _render(request, portal, "signin.html.j2", configured=portal.sender is not None,
                           phone=None, w=words,
                           error=words("signin.expired") if expired else None)
        if expired:
            _forget(response, portal, SESSION_COOKIE)
        return response
    saved = request.query_params.get("saved") == "1"
    return await _home(request, portal, claims,
                       notice=_words(request)("home.pref_saved") if saved else None)


async def _home(request: Request, portal: Portal, claims: dict[str, Any], status: int = 200,
                **ctx: Any) -> Response:
    try:
        overview = await data.load(request.app.state.relay.caller_pool(), claims)
    except DatabaseError as exc:  # any: data.load says them as the family's members
        log.warning("portal: database unavailable (%s)", type(exc).__name__)
        return HTMLResponse("<!doctype html><title>503</title><p>Please try again in a minute.",
                            status_code=503, headers=HEADERS)
    return _render(request, portal, "home.html.j2", status, overview=overview,
                   positions={s["stage"]: i for i, s in enumerate(overview.stages)},
                   labels={s["stage"]: s["label"] for s in overview.stages},
                   preferences=data.PREFERENCES, message_languages=data.MESSAGE_LANGUAGES,
                   masked=mask_phone("+" + claims["phone"]),
                   call=({"href": tel_href(overview.dealership_phone),
                          "text": display_phone(overview.dealership_phone)}
                         if overview.dealership_phone else None),
                   **ctx)


async def send_code(request: Request) -> Response:
    """POST /portal/code: text a code (same answer, same time, whatever the number)."""
    portal = portal_for(request)
    form = await _form(request, portal)
    if form is None:
        return _refused(request, portal)
    words = _words(request)
    if portal.sender is None:
        return _render(request, portal, "signin.html.j2", 503, w=words, configured=False,
                       phone=None)
    typed = form.get("phone", "")
    phone = read_phone(typed)
    if isinstance(phone, PhoneProblem):
        # What was typed stays in the field, so the customer fixes it, not retypes it.
        return _render(request, portal, "signin.html.j2", 422, w=words, configured=True,
                       phone=None, typed=typed[:24],
                       error=words("signin." + phone.key, **phone.values))
    started = time.monotonic()
    ip = portal.client_ip(request)
    sender = portal.sender

    def attempt() -> Result:
        # Counted the same for every number before the sender is asked, so
        # a number the sender does not know is refused exactly when a known one is.
        if not portal.may_send(phone, ip):
            return Result(Outcome.TOO_MANY)
        return sender.send(phone, ip)

    result = await run_in_threadpool(attempt)
    await asyncio.sleep(max(0.0, SEND_FLOOR_S - (time.monotonic() - started)))
    if result.outcome is Outcome.SENT:
        return _render(request, portal, "signin.html.j2", w=words, configured=True, phone=phone,
                       notice=words("signin.code_sent", phone=mask_phone(phone)))
    status, key = ((429, "signin.too_many") if result.outcome is Outcome.TOO_MANY
                   else (503, "signin.unavailable"))
    return _render(request, portal, "signin.html.j2", status, w=words, configured=True,
                   phone=None, error=words(key))


async def sign_in(request: Request) -> Response:
    """POST /portal/sign-in: check the code; a good one sets the session cookie."""
    portal = portal_for(request)
    form = await _form(request, portal)
    if form is None:
        return _refused(request, portal)
    words = _words(request)
    phone = normalize_phone(form.get("phone", ""))
    code = re.sub(r"\s", "", form.get("code", ""))[:10]
    if portal.sender is None or phone is None:
        return _redirect(portal)
    started = time.monotonic()
    result = await run_in_threadpool(_check, portal, portal.sender, phone, code,
                                     portal.client_ip(request))
    # The same floor as a send's: how long a check takes says nothing either.
    await asyncio.sleep(max(0.0, SEND_FLOOR_S - (time.monotonic() - started)))
    if result.outcome is Outcome.OK and result.token:
        response = _redirect(portal)
        _cookie(response, portal, SESSION_COOKIE, result.token, SESSION_TTL_S)
        return response
    status, key, again = {
        Outcome.WRONG: (401, "signin.bad_code", phone),
        Outcome.TOO_MANY: (429, "signin.too_many", None),
    }.get(result.outcome, (503, "signin.unavailable", phone))
    return _render(request, portal, "signin.html.j2", status, w=words, configured=True,
                   phone=again, error=words(key))


def _check(portal: Portal, sender: Sender, phone: str, code: str, ip: str) -> Result:
    """Count the check, ask the sender, and make regnotify's session for a good code."""
    if not portal.may_check(phone):
        # Used up: the console's code goes too (a resend does not refill).
        forget = getattr(sender, "forget", None)
        if forget is not None:
            forget(phone)
        return Result(Outcome.TOO_MANY)
    result = sender.check(phone, code, ip)
    if result.outcome is not Outcome.OK:
        return result
    portal.signed_in(phone)
    if result.token:
        return result
    try:
        with family_errors(), portal.engine().begin() as conn:
            subject = customer_subjects.subject_for(conn, phone)
    except DatabaseError as exc:
        log.warning("portal: no session made, database unavailable (%s)", type(exc).__name__)
        return Result(Outcome.UNAVAILABLE)
    return Result(Outcome.OK, own_session(portal.settings, phone, subject))


async def preference(request: Request) -> Response:
    """POST /portal/preference: the customer's own preference and messages' language, through
    RLS and the column grant (a form without a language leaves it as it is)."""
    portal = portal_for(request)
    form = await _form(request, portal)
    if form is None:
        return _refused(request, portal)
    claims = _claims(portal, request)
    if claims is None:
        return _redirect(portal)
    reg, pref = form.get("registration_id", ""), form.get("pref", "")
    try:
        changed = await data.set_preference(request.app.state.relay.caller_pool(), claims, reg,
                                            pref, form.get("language"))
    except DatabaseError as exc:
        log.warning("portal: preference not saved (%s)", type(exc).__name__)
        changed = False
    if not changed:
        return await _home(request, portal, claims, 404, error=_words(request)("home.not_found"))
    return _redirect(portal, f"{BASE}?saved=1")


async def sign_out(request: Request) -> Response:
    """POST /portal/sign-out: forget the session cookie."""
    portal = portal_for(request)
    if await _form(request, portal) is None:
        return _refused(request, portal)
    response = _redirect(portal)
    _forget(response, portal, SESSION_COOKIE)
    return response


async def stylesheet(request: Request) -> Response:
    """GET /portal/portal.css."""
    return Response(_CSS, media_type="text/css", headers={
        "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})
