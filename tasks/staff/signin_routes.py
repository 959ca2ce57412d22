"""POST /staff/code, /staff/sign-in, /staff/sign-out."""

from __future__ import annotations

import asyncio
import logging
import re
import time

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from db.errors import DatabaseUnavailable
from tasks.portal.signin import Outcome, Result
from tasks.portal.state import portal_for
from tasks.staff import data, web
from tasks.staff.signin import STAFF_SESSION_TTL_S, mask_email

log = logging.getLogger(__name__)

#: Every answer to "e-mail me a code" takes at least this long, member or not,
#: so the time says nothing about who is staff.
SEND_FLOOR_S = 1.5
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def send_code(request: Request) -> Response:
    """The same page, answer and time for any address; a code only to an active member."""
    fields = await web.form(request)
    if fields is None:
        return web.refused(request)
    sender = web.sender_for(request)
    if sender is None:
        return web.render(request, "signin.html.j2", 503, configured=False, email=None)
    email = fields.get("email", "").strip().lower()[:254]
    if not _EMAIL.match(email):
        return web.render(request, "signin.html.j2", 422, configured=True, email=None,
                          error="Enter an e-mail address like name@dealership.com.")
    started = time.monotonic()
    portal = portal_for(request)
    result = Result(Outcome.SENT)
    if not (portal.sends_per_ip.allow("staff|" + _client_ip(request))
            and portal.sends_per_number.allow("staff|" + email)):
        result = Result(Outcome.TOO_MANY)
    else:
        engine = request.app.state.relay.engine()
        try:
            member = await run_in_threadpool(data.member_is_active, engine, email)
        except (SQLAlchemyError, DatabaseUnavailable) as exc:
            log.warning("staff: membership not checked (%s)", type(exc).__name__)
            member, result = False, Result(Outcome.UNAVAILABLE)
        if member:
            sent = await run_in_threadpool(sender.send, email)
            # A refused or failed send answers as any address does; the log says why.
            if sent.outcome is Outcome.TOO_MANY:
                result = sent
    await asyncio.sleep(max(0.0, SEND_FLOOR_S - (time.monotonic() - started)))
    if result.outcome is Outcome.SENT:
        return web.render(request, "signin.html.j2", configured=True, email=email,
                          notice=f"If {mask_email(email)} belongs to a staff member, a "
                                 "sign-in code is on its way to it.")
    status, text = ((429, "Too many codes asked for. Wait a few minutes and try again.")
                    if result.outcome is Outcome.TOO_MANY else
                    (503, "Sign-in is unavailable right now. Please try again in a minute."))
    return web.render(request, "signin.html.j2", status, configured=True, email=None,
                      error=text)


async def sign_in(request: Request) -> Response:
    fields = await web.form(request)
    if fields is None:
        return web.refused(request)
    sender = web.sender_for(request)
    email = fields.get("email", "").strip().lower()[:254]
    code = re.sub(r"\s", "", fields.get("code", ""))[:10]
    if sender is None or not _EMAIL.match(email):
        return web.redirect()
    result = await run_in_threadpool(sender.check, email, code)
    if result.outcome is Outcome.OK and result.token:
        response = web.redirect()
        web.cookie(response, portal_for(request), web.SESSION_COOKIE, result.token,
                   STAFF_SESSION_TTL_S)
        return response
    status, text, again = {
        Outcome.WRONG: (401, "That code is wrong or has expired.", email),
        Outcome.TOO_MANY: (429, "Too many tries. Ask for a new code.", None),
    }.get(result.outcome, (503, "Sign-in is unavailable right now.", email))
    return web.render(request, "signin.html.j2", status, configured=True, email=again,
                      error=text)


async def sign_out(request: Request) -> Response:
    if await web.form(request) is None:
        return web.refused(request)
    response = web.redirect()
    portal = portal_for(request)
    response.delete_cookie(web.SESSION_COOKIE, path=web.BASE, httponly=True, samesite="lax",
                           secure=portal.secure_cookies)
    return response
