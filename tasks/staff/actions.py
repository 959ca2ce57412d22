"""The console's actions (POST, CSRF and same origin): send now, silence the next change,
re-send a failed message, mark handled. Each is one SQL function of migration 21, called
as the signed-in caller, which refuses anyone but active staff and records who did it."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tasks.staff import data, web, words
from tasks.staff.pages import parse_id

log = logging.getLogger(__name__)


def _back(fields: dict[str, str], fallback: str) -> str:
    """Where the form came from: a console path only (never another site)."""
    to = fields.get("next", "")
    return to if to.startswith(web.BASE) and not to.startswith("//") else fallback


async def send_now(request: Request) -> Response:
    fields = await web.form(request)
    if fields is None:
        return web.refused(request)
    reg = data.parse_uuid(request.path_params["id"])
    if reg is None:
        return web.redirect()
    bypass = fields.get("bypass") == "1"
    done = await web.as_staff(request, lambda conn, me: data.send_now(conn, reg, bypass))
    if isinstance(done, Response):
        return done
    answer = done[1]
    here = f"{web.BASE}/registrations/{reg}"
    if not answer.get("queued"):
        # A code, never text: the page says it in its own fixed words.
        reason = str(answer.get("reason") or "")
        code = reason if reason in words.NOT_QUEUED else "other"
        return web.redirect(f"{here}?done=not_queued&reason={code}")
    # As the API's notify does: a queue run now, not at the next tick.
    await run_in_threadpool(request.app.state.relay.background_tick, "staff")
    return web.redirect(f"{here}?done={'held' if answer.get('held_until') else 'sent'}")


async def silence_next(request: Request) -> Response:
    fields = await web.form(request)
    if fields is None:
        return web.refused(request)
    reg = data.parse_uuid(request.path_params["id"])
    if reg is None:
        return web.redirect()
    done = await web.as_staff(request, lambda conn, me: data.silence_next(conn, reg))
    if isinstance(done, Response):
        return done
    return web.redirect(f"{web.BASE}/registrations/{reg}?done=silenced")


async def resend(request: Request) -> Response:
    fields = await web.form(request)
    if fields is None:
        return web.refused(request)
    delivery = parse_id(request.path_params["id"])
    if delivery is None:
        return web.bad_input(request, "That is no delivery's number: open the message from "
                                      "the console's lists and press Re-send there.")
    done = await web.as_staff(request, lambda conn, me: data.resend(conn, delivery))
    if isinstance(done, Response):
        return done
    requeued = done[1]
    back = _back(fields, f"{web.BASE}/attention")
    if requeued is None:
        return web.redirect(_with(back, "done=gone"))
    # Published after the requeue committed (as retry-failed does); if the
    # broker is down the row is queued and the tick's sweep sends it.
    await run_in_threadpool(_dispatch, requeued["id"], requeued["channel"])
    return web.redirect(_with(back, "done=resent"))


def _dispatch(delivery_id: int, channel: str) -> None:
    from db.connector import family_errors
    from db.errors import BrokerUnavailable
    from db.queue import DeliveryRef
    from tasks.broker.dispatch import dispatch

    try:
        with family_errors(network=BrokerUnavailable):
            dispatch([DeliveryRef(delivery_id, channel)])
    except BrokerUnavailable as exc:
        log.warning("staff: re-send of %s queued, broker unreachable (%s)", delivery_id,
                    type(exc).__name__)


async def mark_handled(request: Request) -> Response:
    fields = await web.form(request)
    if fields is None:
        return web.refused(request)
    kind = fields.get("kind", "")
    item = parse_id(fields.get("id"))
    if item is None:
        return web.bad_input(request, "That is no message's number: press Mark handled on "
                                      "the console's own lists.")
    if kind not in ("delivery", "reply"):
        return web.redirect()
    done = await web.as_staff(request, lambda conn, me: data.mark_handled(conn, kind, item))
    if isinstance(done, Response):
        return done
    back = _back(fields, f"{web.BASE}/attention")
    return web.redirect(_with(back, "done=handled" if done[1] else "done=gone"))


def _with(path: str, extra: str) -> str:
    path = path.split("#")[0]
    return f"{path}{'&' if '?' in path else '?'}{extra}"
