"""What every /staff route shares: the page frame, cookies, CSRF and origin checks, and the
signed-in member (as the database says, never as the Python decides).

The CSP, headers and CSRF tokens are the customer page's (tasks.portal), by
import; the cookies are the console's own: `__Host-` ones over https, else
scoped to /staff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from html import escape as html_escape
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from db.connector import family_errors
from db.errors import DatabaseError
from tasks.auth.api_tokens import verify_token
from tasks.exceptions import InvalidToken
from tasks.portal.state import HOST_PREFIX, Portal, portal_for
from tasks.portal.views import HEADERS as PORTAL_HEADERS
from tasks.staff import data, words
from tasks.staff.signin import StaffSender, choose_staff_sender

log = logging.getLogger(__name__)

BASE = "/staff"
SESSION_COOKIE = "rn_staff"
CSRF_COOKIE = "rn_staff_csrf"
_HERE = Path(__file__).parent
_env = Environment(loader=FileSystemLoader(_HERE / "templates"),
                   autoescape=select_autoescape(["j2"]), trim_blocks=True, lstrip_blocks=True)
_env.globals.update(status_words=words.status_words, when=words.when, action_words=words.action)
_lock = threading.Lock()
T = TypeVar("T")
#: The customer page's headers, but the referrer kept within this origin, so
#: that a browser's form post names this origin (no-referrer makes it "null").
#: Search addresses carry phones and e-mails: they never leave for another site.
HEADERS = {**PORTAL_HEADERS, "Referrer-Policy": "same-origin"}


def sender_for(request: Request) -> StaffSender | None:
    """The app's staff code sender, made on first use (after the relay said where it binds)."""
    app = request.app
    if not hasattr(app.state, "staff_sender"):
        with _lock:
            if not hasattr(app.state, "staff_sender"):
                portal = portal_for(request)
                app.state.staff_sender = choose_staff_sender(
                    portal.settings, loopback=portal.loopback, engine=portal.engine)
    sender: StaffSender | None = app.state.staff_sender
    return sender


def cookie_name(portal: Portal, key: str) -> str:
    """A console cookie's name: `__Host-` over https (only this origin may set it)."""
    return HOST_PREFIX + key if portal.secure_cookies else key


def cookie_path(portal: Portal) -> str:
    # `__Host-` requires Path=/; over plain http the cookies stay under /staff.
    return "/" if portal.secure_cookies else BASE


def _session(request: Request) -> str | None:
    """The staff cookie when it holds a verified token: the console's CSRF binds to it."""
    if claims(request) is None:
        return None
    return request.cookies.get(cookie_name(portal_for(request), SESSION_COOKIE))


def render(request: Request, template: str, status: int = 200, *, signed_out: bool = False,
           **ctx: Any) -> HTMLResponse:
    """A console page. Its forms' CSRF token is bound to the staff session, or before
    sign-in (and on a page that ends the session: `signed_out`) to a nonce this server
    made and marked; a nonce the browser brings without that mark is never adopted."""
    portal = portal_for(request)
    session = None if signed_out else _session(request)
    nonce = request.cookies.get(cookie_name(portal, CSRF_COOKIE))
    fresh = not session and not portal.nonce_ok(nonce)
    if fresh:
        nonce = portal.new_nonce()
    html = _env.get_template(template).render(
        base=BASE, csrf=portal.csrf_token(session=session, nonce=nonce),
        dealership=portal.settings.dealership_name, **ctx)
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    if fresh:
        cookie(response, portal, CSRF_COOKIE, str(nonce), None)
    return response


def cookie(response: Response, portal: Portal, key: str, value: str,
           max_age: int | None) -> None:
    response.set_cookie(cookie_name(portal, key), value, max_age=max_age,
                        path=cookie_path(portal), httponly=True, samesite="lax",
                        secure=portal.secure_cookies)


def forget(response: Response, portal: Portal, key: str) -> None:
    response.delete_cookie(cookie_name(portal, key), path=cookie_path(portal), httponly=True,
                           samesite="lax", secure=portal.secure_cookies)


def redirect(to: str = BASE) -> Response:
    return RedirectResponse(to, status_code=303, headers=HEADERS)


def _same_origin(request: Request, portal: Portal) -> bool:
    """A form post from this console. Browsers say so in Sec-Fetch-Site; where they do not,
    an Origin must name this relay. `Origin: null` (a sandboxed frame, a data: page, a
    redirect from elsewhere) is another origin; the console's pages send
    `Referrer-Policy: same-origin` so that a browser names its own origin on their
    forms. No Origin at all (not a browser) leaves it to the CSRF token."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    given = request.headers.get("origin")
    if given is None:
        return True
    if given == "null":
        return False
    parts = urlsplit(given)
    origin = f"{parts.scheme}://{parts.netloc}"
    own = {f"{request.url.scheme}://{request.url.netloc}"}
    public = portal.settings.relay_public_url
    if public:
        p = urlsplit(public)
        own.add(f"{p.scheme}://{p.netloc}")
    return origin in own


async def form(request: Request) -> dict[str, str] | None:
    """The posted form when it comes from this console with its CSRF token; else None."""
    portal = portal_for(request)
    if not _same_origin(request, portal):
        return None
    body = (await request.body()).decode("utf-8", "replace")
    fields = {k: v[0] for k, v in parse_qs(body).items()}
    if not portal.csrf_ok(session=_session(request),
                          nonce=request.cookies.get(cookie_name(portal, CSRF_COOKIE)),
                          given=fields.get("csrf")):
        return None
    return fields


def refused(request: Request) -> Response:
    return render(request, "signin.html.j2", 403, configured=True, email=None,
                  error="This form has expired or came from another site. Please try again.")


def bad_input(request: Request, what: str) -> Response:
    """400: one line that says what was wrong and what to do, before anything is read."""
    return HTMLResponse("<!doctype html><html lang=\"en\"><title>Bad request</title><main>"
                        f"<p>{html_escape(what)}</p><p><a href=\"{BASE}\">Back to the "
                        "console</a></p></main></html>", status_code=400, headers=HEADERS)


def claims(request: Request) -> dict[str, Any] | None:
    """The verified claims of the staff cookie. Whether they are staff's is the database's say."""
    if hasattr(request.state, "staff_claims"):  # verified once per request
        return request.state.staff_claims  # type: ignore[no-any-return]
    request.state.staff_claims = None
    portal = portal_for(request)
    token = request.cookies.get(cookie_name(portal, SESSION_COOKIE))
    if not token:
        return None
    try:
        found = verify_token(token, portal.settings)
    except InvalidToken as exc:
        log.info("staff: session cookie refused (%s)", str(exc)[:120])
        return None
    if found.get("role") != "authenticated":
        return None
    request.state.staff_claims = found
    return found


def signed_out(request: Request, status: int = 200, error: str | None = None) -> Response:
    portal = portal_for(request)
    response = render(request, "signin.html.j2", status, signed_out=True,
                      configured=sender_for(request) is not None, email=None, error=error)
    if request.cookies.get(cookie_name(portal, SESSION_COOKIE)):
        forget(response, portal, SESSION_COOKIE)
    return response


class NotStaff(Exception):
    """The database says the caller is not an active staff member."""


def unavailable() -> Response:
    return HTMLResponse("<!doctype html><html lang=\"en\"><title>Unavailable</title>"
                        "<main><p>The database is unavailable. Please try again in a "
                        "minute.</p></main></html>", status_code=503, headers=HEADERS)


async def as_staff(request: Request, work: Callable[[Connection, dict[str, Any]], T]
                   ) -> tuple[dict[str, Any], T] | Response:
    """Run `work(conn, me)` as the signed-in caller, after the database said who they are.

    A page's answer when the cookie is missing or bad, the caller is not an
    active member (a customer, a removed member), or the database is down.
    """
    caller = claims(request)
    if caller is None:
        expired = bool(request.cookies.get(cookie_name(portal_for(request), SESSION_COOKIE)))
        return signed_out(request, error="Your session has ended. Please sign in again."
                          if expired else None)
    engine = request.app.state.relay.engine()

    def run() -> tuple[dict[str, Any], T]:
        with data.as_member(engine, caller) as (conn, me):
            if me is None:
                raise NotStaff
            return me, work(conn, me)

    try:
        with family_errors():
            return await run_in_threadpool(run)
    except NotStaff:
        return signed_out(request, 403, "This session is not a staff member's (any more). "
                          "Sign in with your staff e-mail.")
    except DatabaseError as exc:
        log.warning("staff: database unavailable (%s)", type(exc).__name__)
        return unavailable()


def page(request: Request, template: str, me: Mapping[str, Any], status: int = 200,
         **ctx: Any) -> HTMLResponse:
    """A console page for a signed-in member: the header with the attention count."""
    return render(request, template, status, me=me, path=request.url.path, **ctx)


_CSS = (_HERE / "staff.css").read_bytes()


async def stylesheet(request: Request) -> Response:
    """GET /staff/staff.css."""
    return Response(_CSS, media_type="text/css", headers={
        "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})
