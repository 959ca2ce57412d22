"""The customer page's routes: sign in by code, see the registrations, set the preference."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import psycopg
from jinja2 import Environment, FileSystemLoader, select_autoescape
from psycopg_pool import PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from db.errors import DatabaseUnavailable
from tasks.exceptions import InvalidToken
from tasks.masking import mask_phone
from tasks.portal import data
from tasks.portal.i18n import LANGUAGES, Words, pick_language
from tasks.portal.signin import SESSION_TTL_S, Outcome, Result
from tasks.portal.state import CSRF_COOKIE, LANG_COOKIE, SESSION_COOKIE, Portal, portal_for
from tasks.verified_claims import verify_cached

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
_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")


def normalize_phone(raw: str) -> str | None:
    """E.164 from what a person types; ten digits without a country code are +1 (US)."""
    digits = re.sub(r"\D", "", raw or "")
    if not raw.strip().startswith("+"):
        if len(digits) == 10:
            digits = "1" + digits
        elif not (len(digits) == 11 and digits.startswith("1")):
            return None
    phone = "+" + digits
    return phone if _PHONE.match(phone) else None


def _words(request: Request) -> Words:
    return Words(pick_language(request.query_params.get("lang"),
                               request.cookies.get(LANG_COOKIE),
                               request.headers.get("accept-language")))


def _render(request: Request, portal: Portal, template: str, status: int = 200,
            **ctx: Any) -> HTMLResponse:
    nonce = request.cookies.get(CSRF_COOKIE) or ""
    fresh = len(nonce) < 32
    if fresh:
        nonce = secrets.token_urlsafe(32)
    words: Words = ctx.pop("w", None) or _words(request)
    html = _env.get_template(template).render(
        w=words, base=BASE, csrf=portal.csrf_token(nonce),
        dealership=portal.settings.dealership_name, **ctx)
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    if fresh:
        _cookie(response, portal, CSRF_COOKIE, nonce, None)
    lang = request.query_params.get("lang")
    if lang in LANGUAGES:
        _cookie(response, portal, LANG_COOKIE, lang, 365 * 86400)
    return response


def _cookie(response: Response, portal: Portal, key: str, value: str,
            max_age: int | None) -> None:
    response.set_cookie(key, value, max_age=max_age, path=BASE, httponly=True,
                        samesite="lax", secure=portal.secure_cookies)


def _redirect(portal: Portal, to: str = BASE) -> Response:
    return RedirectResponse(to, status_code=303, headers=HEADERS)


def _claims(portal: Portal, request: Request) -> dict[str, Any] | None:
    """The verified claims of the session cookie, when it holds a customer's."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        claims = verify_cached(token, portal.settings)
    except InvalidToken as exc:
        log.info("portal: session cookie refused (%s)", str(exc)[:120])
        return None
    if claims.get("role") != "authenticated" or not claims.get("phone"):
        return None
    return claims


async def _form(request: Request, portal: Portal) -> dict[str, str] | None:
    """The posted form when its CSRF token matches this browser's cookie; else None."""
    body = (await request.body()).decode("utf-8", "replace")
    form = {k: v[0] for k, v in parse_qs(body).items()}
    if not portal.csrf_ok(request.cookies.get(CSRF_COOKIE), form.get("csrf")):
        return None
    return form


def _refused(request: Request, portal: Portal) -> Response:
    words = _words(request)
    return _render(request, portal, "signin.html.j2", 403, w=words,
                   configured=portal.sender is not None, phone=None,
                   error=words("signin.form_expired"))


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def page(request: Request) -> Response:
    """GET /portal: the sign-in form, or the customer's registrations."""
    portal = portal_for(request)
    claims = _claims(portal, request)
    if claims is None:
        words = _words(request)
        expired = bool(request.cookies.get(SESSION_COOKIE))
        response = _render(request, portal, "signin.html.j2", configured=portal.sender is not None,
                           phone=None, w=words,
                           error=words("signin.expired") if expired else None)
        if expired:
            response.delete_cookie(SESSION_COOKIE, path=BASE)
        return response
    saved = request.query_params.get("saved") == "1"
    return await _home(request, portal, claims,
                       notice=_words(request)("home.pref_saved") if saved else None)


async def _home(request: Request, portal: Portal, claims: dict[str, Any], status: int = 200,
                **ctx: Any) -> Response:
    try:
        overview = await data.load(request.app.state.relay.caller_pool(), claims)
    except (psycopg.Error, PoolTimeout, DatabaseUnavailable) as exc:
        log.warning("portal: database unavailable (%s)", type(exc).__name__)
        return HTMLResponse("<!doctype html><title>503</title><p>Please try again in a minute.",
                            status_code=503, headers=HEADERS)
    return _render(request, portal, "home.html.j2", status, overview=overview,
                   positions={s["stage"]: i for i, s in enumerate(overview.stages)},
                   labels={s["stage"]: s["label"] for s in overview.stages},
                   preferences=data.PREFERENCES, message_languages=data.MESSAGE_LANGUAGES,
                   masked=mask_phone("+" + claims["phone"]),
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
    phone = normalize_phone(form.get("phone", ""))
    if phone is None:
        return _render(request, portal, "signin.html.j2", 422, w=words, configured=True,
                       phone=None, error=words("signin.bad_phone"))
    started = time.monotonic()
    ip = _client_ip(request)
    if ((portal.own("sends_per_ip") and not portal.sends_per_ip.allow(ip))
            or (portal.own("sends_per_number") and not portal.sends_per_number.allow(phone))):
        result = Result(Outcome.TOO_MANY)
    else:
        result = await run_in_threadpool(portal.sender.send, phone, ip)
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
    result = await run_in_threadpool(portal.sender.check, phone, code, _client_ip(request))
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
    except (psycopg.Error, PoolTimeout, DatabaseUnavailable) as exc:
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
    response.delete_cookie(SESSION_COOKIE, path=BASE, httponly=True, samesite="lax",
                           secure=portal.secure_cookies)
    return response


async def stylesheet(request: Request) -> Response:
    """GET /portal/portal.css."""
    return Response(_CSS, media_type="text/css", headers={
        "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})
