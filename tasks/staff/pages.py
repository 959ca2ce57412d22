"""GET /staff (messages), /staff/registrations/{id}, /staff/attention, /staff/replies,
/staff/queue: each read as the signed-in caller."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tasks.staff import data, web, words

#: The largest bigint: ids past it are no row's (PostgreSQL would refuse them).
MAX_ID = 2**63 - 1


class BadInput(ValueError):
    """A query value the console cannot use; its text says what to do instead."""


def _date(value: str | None, name: str) -> datetime | None:
    """A YYYY-MM-DD filter (empty: none); a day the page can also add one to."""
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        day + timedelta(days=1)
    except (ValueError, OverflowError):
        raise BadInput(f"'{name}' must be a date like 2026-12-06 (up to 9999-12-30): "
                       "pick one in the date box or leave it empty.") from None
    return day


def parse_id(value: str | None) -> int | None:
    """A row id from an address or a form: digits, below 2**63; None otherwise."""
    if not value or not value.isascii() or not value.isdigit():
        return None
    number = int(value)
    return number if number <= MAX_ID else None


def _cursor(value: str | None) -> tuple[datetime, int] | None:
    """The keyset of the next page: '<created_at ISO>_<id>'."""
    if not value:
        return None
    at, _, ident = value.rpartition("_")
    number = parse_id(ident)
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        number = None
    if number is None:
        raise BadInput("That page address is not one the console made: go back to the first "
                       "page of messages and use its 'Older' link.")
    return when, number


async def messages(request: Request) -> Response:
    q = request.query_params
    search = data.parse_search(q.get("q", ""))
    try:
        since, until = _date(q.get("from"), "from"), _date(q.get("to"), "to")
        before = _cursor(q.get("before"))
    except BadInput as exc:
        return web.bad_input(request, str(exc))
    filters = data.Filters(
        status=q.get("status") if q.get("status") in data.STATUSES else None,
        channel=q.get("channel") if q.get("channel") in data.CHANNELS else None,
        since=since, until=until + timedelta(days=1) if until else None)
    done = await web.as_staff(request, lambda conn, me: data.messages(conn, search, filters,
                                                                      before))
    if isinstance(done, Response):
        return done
    me, rows = done
    more = len(rows) > data.PAGE_SIZE
    rows = rows[:data.PAGE_SIZE]
    keep = {k: v for k, v in q.items() if k != "before" and v}
    next_cursor = (f"{rows[-1]['created_at'].isoformat()}_{rows[-1]['id']}"
                   if more and rows else None)
    return web.page(request, "messages.html.j2", me, rows=rows, form=keep,
                    statuses=data.STATUSES, channels=data.CHANNELS, next_cursor=next_cursor,
                    searched=search.any, deeper="before" in q)


async def registration(request: Request) -> Response:
    reg = data.parse_uuid(request.path_params["id"])
    if reg is None:
        return await _not_found(request)
    done = await web.as_staff(request, lambda conn, me: data.timeline(conn, reg))
    if isinstance(done, Response):
        return done
    me, doc = done
    if doc is None:
        return web.page(request, "missing.html.j2", me, 404)
    notice = {"sent": "Asked for a message now: it leaves within seconds.",
              "held": "Asked for a message now: it waits for the customer's quiet hours to end.",
              "silenced": "The next stage change will not be sent to the customer.",
              "resent": "The failed message is being sent again.",
              "handled": "Marked handled.",
              "not_queued": "No message was queued: see the reason below."}.get(
                  request.query_params.get("done", ""))
    # Only the fixed words for a known code: never text from the address.
    reason = words.NOT_QUEUED.get(request.query_params.get("reason") or "")
    events = list(reversed(doc["events"]))
    return web.page(request, "registration.html.j2", me, reg=doc["registration"],
                    events=events, notice=notice, reason=reason, zone=doc["zone"])


async def _not_found(request: Request) -> Response:
    done = await web.as_staff(request, lambda conn, me: None)
    if isinstance(done, Response):
        return done
    return web.page(request, "missing.html.j2", done[0], 404)


async def attention(request: Request) -> Response:
    done = await web.as_staff(request, lambda conn, me: data.attention(conn))
    if isinstance(done, Response):
        return done
    me, items = done
    notice = {"resent": "The failed message is being sent again.",
              "handled": "Marked handled.",
              "gone": "That item had already moved on."}.get(
                  request.query_params.get("done", ""))
    return web.page(request, "attention.html.j2", me, items=items, notice=notice)


async def replies(request: Request) -> Response:
    show = request.query_params.get("show", "open")
    handled: dict[str, Any] = {"open": False, "handled": True, "all": None}
    flag = handled.get(show, False)
    done = await web.as_staff(request, lambda conn, me: data.replies(conn, flag))
    if isinstance(done, Response):
        return done
    me, groups = done
    notice = "Marked handled." if request.query_params.get("done") == "handled" else None
    return web.page(request, "replies.html.j2", me, groups=groups, show=show, notice=notice)


async def queue(request: Request) -> Response:
    done = await web.as_staff(request, lambda conn, me: data.queue(conn))
    if isinstance(done, Response):
        return done
    me, waiting = done
    return web.page(request, "queue.html.j2", me, bursts=waiting["bursts"],
                    held=waiting["held"], now=datetime.now(UTC))
