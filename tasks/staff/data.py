"""What the console reads and does, always as the signed-in caller (db.as_caller): row-level
security and the SQL functions of migration 21 decide; nothing here checks permissions."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from db.as_caller import as_caller
from db.connector import family_errors
from db.errors import RegistrationNotFound
from db.queries import query

PAGE_SIZE = 50
STATUSES = ("queued", "sending", "sent", "delivered", "undelivered", "failed", "bounced",
            "complained", "skipped")
CHANNELS = ("sms", "email")
_VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{5,17}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_WORD = re.compile(r"[^\w'-]+")


@contextmanager
def as_member(engine: Engine, claims: Mapping[str, Any]
              ) -> Iterator[tuple[Connection, dict[str, Any] | None]]:
    """One transaction as the caller, with their member row (None: not an active member)
    and how many items need attention."""
    with as_caller(engine, claims) as conn:
        # The filters are optional parameters (`%(x)s IS NULL OR ...`): a plan
        # made for each call's values keeps the indexes that fit them.
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
        me = conn.exec_driver_sql(query("staff_me")).scalar()
        if me is not None:
            me = dict(me)
            me["attention"] = conn.exec_driver_sql(query("staff_attention_count")).scalar()
            me["stages"] = {r.stage: r.label for r in conn.exec_driver_sql(
                query("portal_stages"))}
        yield conn, me


def member_is_active(engine: Engine, email: str) -> bool:
    """Before a code is sent: asked on the relay's own login (nobody is signed in yet)."""
    with engine.connect() as conn:
        return conn.exec_driver_sql(query("staff_member_active"), {"email": email}
                                    ).first() is not None


# ── Messages ─────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Search:
    """What the search box held, read as one kind: phone, e-mail, VIN or name words."""

    phone: str | None = None
    email: str | None = None
    vin: str | None = None
    name: str | None = None

    @property
    def any(self) -> bool:
        return any((self.phone, self.email, self.vin, self.name))


def parse_search(raw: str) -> Search:
    from tasks.portal.views import normalize_phone

    text = (raw or "").strip()[:120]
    if not text:
        return Search()
    if _EMAIL.match(text):
        return Search(email=text.lower())
    digits = re.sub(r"\D", "", text)
    if re.fullmatch(r"[\d\s().+-]+", text) and len(digits) >= 7:
        return Search(phone=normalize_phone(text) or "+" + digits)
    compact = text.replace(" ", "").upper()
    if _VIN.match(compact) and any(c.isdigit() for c in compact):
        return Search(vin=compact)
    words = [w for w in _WORD.split(text.lower()) if w]
    if not words:
        return Search()
    # Each word a prefix: "ana lo" finds "Ana Lopez".
    return Search(name=" & ".join(_quote_word(w) + ":*" for w in words[:6]))


def _quote_word(word: str) -> str:
    return "'" + word.replace("'", "''").replace("\\", "") + "'"


@dataclass(frozen=True)
class Filters:
    status: str | None = None
    channel: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def messages(conn: Connection, search: Search, filters: Filters,
             before: tuple[datetime, int] | None) -> list[dict[str, Any]]:
    """One page of messages, newest first, after the keyset `before` (created_at, id)."""
    params = {"status": filters.status, "channel": filters.channel, "since": filters.since,
              "until": filters.until, "before_at": before[0] if before else None,
              "before_id": before[1] if before else None, "limit": PAGE_SIZE + 1,
              "phone": search.phone, "email": search.email, "vin": search.vin,
              "name": search.name}
    name = "staff_messages_found" if search.any else "staff_messages"
    return [dict(r) for r in conn.exec_driver_sql(query(name), params).mappings()]


# ── A registration ───────────────────────────────────────────────────────────


def parse_uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError):
        return None


def timeline(conn: Connection, registration_id: str) -> dict[str, Any] | None:
    found = conn.exec_driver_sql(query("notification_timeline"),
                                 {"registration_id": registration_id}).scalar()
    if found is None:
        return None
    doc = dict(found)
    doc["zone"] = conn.exec_driver_sql(query("staff_registration_zone"),
                                       {"id": registration_id}).scalar()
    return doc


def send_now(conn: Connection, registration_id: str, bypass: bool) -> dict[str, Any]:
    return dict(conn.exec_driver_sql(query("staff_send_now"),
                                     {"id": registration_id, "bypass": bypass}).scalar())


def silence_next(conn: Connection, registration_id: str) -> bool:
    try:
        with family_errors():
            return bool(conn.exec_driver_sql(query("staff_silence_next"),
                                             {"id": registration_id}).scalar())
    except RegistrationNotFound:
        return False


def resend(conn: Connection, delivery_id: int) -> dict[str, Any] | None:
    found = conn.exec_driver_sql(query("staff_resend"), {"id": delivery_id}).scalar()
    return dict(found) if found is not None else None


def mark_handled(conn: Connection, kind: str, item_id: int) -> bool:
    return bool(conn.exec_driver_sql(query("staff_mark_handled"),
                                     {"kind": kind, "id": item_id}).scalar())


# ── Attention, replies, queue ────────────────────────────────────────────────


def attention(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    deliveries = [dict(r) for r in conn.exec_driver_sql(query("staff_attention_deliveries"))
                  .mappings()]
    replies = [dict(r) for r in conn.exec_driver_sql(query("staff_attention_replies"))
               .mappings()]
    return {
        "failed": [d for d in deliveries if d["status"] == "failed" and not d["outcome_unknown"]],
        "unknown": [d for d in deliveries if d["status"] == "failed" and d["outcome_unknown"]],
        "bounced": [d for d in deliveries if d["status"] in ("bounced", "complained")],
        "opted_out": [d for d in deliveries if d["skip_reason"] == "opted_out"],
        "replies": replies,
    }


def replies(conn: Connection, handled: bool | None) -> list[dict[str, Any]]:
    """Replies newest first, grouped by number in the order each number last wrote."""
    rows = [dict(r) for r in conn.exec_driver_sql(query("staff_replies"),
                                                  {"handled": handled}).mappings()]
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        group = groups.setdefault(row["from_phone"], {
            "from_phone": row["from_phone"], "customer_name": row["customer_name"],
            "registration_id": row["registration_id"], "replies": []})
        group["replies"].append(row)
    return list(groups.values())


def queue(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    return {"bursts": [dict(r) for r in conn.exec_driver_sql(query("staff_queue_bursts"))
                       .mappings()],
            "held": [dict(r) for r in conn.exec_driver_sql(query("staff_queue_held"))
                     .mappings()]}
