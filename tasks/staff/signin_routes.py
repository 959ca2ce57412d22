"""POST /staff/code, /staff/sign-in, /staff/sign-out."""

from __future__ import annotations

import asyncio
import logging
import re
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from db.connector import family_errors
from db.errors import DatabaseError
from tasks.auth.api_tokens import verify_token
from tasks.exceptions import InvalidToken
from tasks.portal import limits
from tasks.portal.signin import Outcome, Result
from tasks.portal.state import Portal, portal_for
from tasks.staff import data, web
from tasks.staff.signin import STAFF_SESSION_TTL_S, StaffSender, mask_email

log = logging.getLogger(__name__)

#: Every answer to "e-mail me a code" takes this long, member or not: a member's
#: send is waited for at most this long and goes on in the background after, so
#: neither the time nor a slow or refusing sender says who is staff.
SEND_FLOOR_S = 1.5
#: Sends per address (any address: counted before membership is asked).
SENDS_PER_ADDRESS = limits.SENDS_PER_NUMBER
SENDS_PER_ADDRESS_WINDOW_S = limits.SENDS_PER_NUMBER_WINDOW_S
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: Sends still running after their answer went (kept so they are not collected).
_BACKGROUND: set[asyncio.Task[None]] = set()


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
    ip = portal.client_ip(request)
    result = Result(Outcome.SENT)
    allowed = await run_in_threadpool(_may_send, portal, email, ip)
    if not allowed:
        result = Result(Outcome.TOO_MANY)
    else:
        engine = request.app.state.relay.engine()
        try:
            with family_errors():
                member = await run_in_threadpool(data.member_is_active, engine, email)
        except DatabaseError as exc:
            log.warning("staff: membership not checked (%s)", type(exc).__name__)
            member, result = False, Result(Outcome.UNAVAILABLE)
        if member:
            task = asyncio.create_task(_send(sender, email, ip))
            _BACKGROUND.add(task)
            task.add_done_callback(_BACKGROUND.discard)
            remaining = SEND_FLOOR_S - (time.monotonic() - started)
            if remaining > 0:
                await asyncio.wait({task}, timeout=remaining)
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


def _may_send(portal: Portal, email: str, ip: str) -> bool:
    """Count a send for the client's address, then for the e-mail address (any address)."""
    if not portal.counters.hit("staff-ip", ip, limits.SENDS_PER_IP,
                               limits.SENDS_PER_IP_WINDOW_S):
        return False
    return portal.counters.hit("staff-send", email, SENDS_PER_ADDRESS,
                               SENDS_PER_ADDRESS_WINDOW_S)


async def _send(sender: StaffSender, email: str, ip: str) -> None:
    """A member's send. Whatever it answers, the page said what it says to anyone;
    a refusal (Supabase's 429 among them) is only logged."""
    try:
        sent = await run_in_threadpool(sender.send, email, ip)
    except Exception as exc:  # the page has answered; a failure here is only logged
        log.warning("staff: a sign-in code was not sent (%s)", type(exc).__name__)
        return
    if sent.outcome is not Outcome.SENT:
        log.warning("staff: a sign-in code for %s was not sent (%s)", mask_email(email),
                    sent.outcome.value)


async def sign_in(request: Request) -> Response:
    fields = await web.form(request)
    if fields is None:
        return web.refused(request)
    sender = web.sender_for(request)
    email = fields.get("email", "").strip().lower()[:254]
    code = re.sub(r"\s", "", fields.get("code", ""))[:10]
    if sender is None or not _EMAIL.match(email):
        return web.redirect()
    portal = portal_for(request)
    result = await run_in_threadpool(_check, portal, sender, email, code,
                                     portal.client_ip(request))
    if result.outcome is Outcome.OK and result.token:
        response = web.redirect()
        web.cookie(response, portal, web.SESSION_COOKIE, result.token,
                   session_max_age(result.token, portal))
        return response
    status, text, again = {
        Outcome.WRONG: (401, "That code is wrong or has expired.", email),
        Outcome.TOO_MANY: (429, "Too many tries. Ask for a new code.", None),
    }.get(result.outcome, (503, "Sign-in is unavailable right now.", email))
    return web.render(request, "signin.html.j2", status, configured=True, email=again,
                      error=text)


def _check(portal: Portal, sender: StaffSender, email: str, code: str, ip: str) -> Result:
    """Count the check for the address first, member or not (a resend does not start
    the count again: only a good code does), then ask the sender."""
    if not portal.counters.hit("staff-check", email, limits.CHECKS_PER_CODE,
                               limits.CHECKS_WINDOW_S):
        sender.forget(email)
        return Result(Outcome.TOO_MANY)
    result = sender.check(email, code, ip)
    if result.outcome is Outcome.OK:
        portal.counters.clear("staff-check", email)
    return result


def session_max_age(token: str, portal: Portal) -> int:
    """The cookie lasts as long as the token in it (Supabase's for an hour, ours ten)."""
    try:
        exp = int(verify_token(token, portal.settings).get("exp", 0))
    except (InvalidToken, TypeError, ValueError):
        return 0
    return max(0, min(STAFF_SESSION_TTL_S, exp - int(time.time())))


async def sign_out(request: Request) -> Response:
    if await web.form(request) is None:
        return web.refused(request)
    response = web.redirect()
    web.forget(response, portal_for(request), web.SESSION_COOKIE)
    return response
