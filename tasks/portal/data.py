"""What a signed-in customer sees and may change, read as that customer (RLS decides).

The portal is an edge: the database's errors come out of here as members of
the family (db.connector), which the routes catch.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from db.as_caller import CallerPool, Statement, run_as_caller
from db.connector import family_errors
from db.errors import DatabaseError
from db.queries import query
from db.vocabulary import LANGUAGES, PREFERENCES

#: The languages a customer's messages can go in (registrations.language):
#: the database's list, as db.vocabulary holds it.
MESSAGE_LANGUAGES = LANGUAGES
#: Stages off the road from sale to plates: shown as a notice, not a step.
SIDE_STAGES = frozenset({"needs_attention"})


@dataclass
class Registration:
    id: str
    vehicle: str
    plate: str | None
    stage: str
    pref: str
    #: When current_stage last changed (migration 26): what "Last change" means
    #: to a customer; a saved preference does not move it.
    stage_changed_at: datetime
    zone: str | None
    #: None: not chosen, messages follow the dealership's default language.
    language: str | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Overview:
    stages: list[dict[str, Any]]
    registrations: list[Registration]
    zone: str | None = None
    #: notification_config.default_language; None when the relay may not read it.
    default_language: str | None = None
    #: notification_config.dealership_phone; None when unset or unreadable.
    dealership_phone: str | None = None


@dataclass(frozen=True)
class Defaults:
    """The dealership's configuration the page shows, read as the relay's login role."""

    zone: str | None = None
    language: str | None = None
    phone: str | None = None


async def load(pool: CallerPool, claims: Mapping[str, Any]) -> Overview:
    """The customer's registrations with their messages, and the stage sequence.

    The three reads go together in one transaction as the customer, one round
    trip (db.as_caller.run_as_caller).
    """
    with family_errors():
        stages, rows, deliveries = await run_as_caller(pool, claims, [
            Statement(query("portal_stages")), Statement(query("portal_registrations")),
            Statement(query("portal_deliveries"))])
    registrations = []
    for row in rows:
        vehicle = " ".join(str(p) for p in (row["vehicle_year"], row["vehicle_make"],
                                            row["vehicle_model"]) if p)
        registrations.append(Registration(
            id=str(row["id"]), vehicle=vehicle, plate=row["plate_number"],
            stage=row["current_stage"], pref=row["notification_pref"],
            stage_changed_at=row["stage_changed_at"], zone=row["time_zone"],
            language=row["language"],
            deliveries=[d for d in deliveries if d["registration_id"] == row["id"]]))
    found = await _defaults(pool)
    return Overview([s for s in stages if s["stage"] not in SIDE_STAGES], registrations,
                    found.zone, found.language, (found.phone or "").strip() or None)


_defaults_cache: dict[int, tuple[float, Defaults]] = {}


async def _defaults(pool: CallerPool) -> Defaults:
    """The dealership's zone, language and phone, read at most once a minute per pool."""
    now = time.monotonic()
    cached = _defaults_cache.get(id(pool))
    if cached is not None and now - cached[0] < 60:
        return cached[1]
    try:
        with family_errors():
            async with pool.connection() as conn:
                cur = await conn.execute(query("portal_defaults"))
                row = await cur.fetchone()
        found = Defaults(row[0], row[1], row[2]) if row is not None else Defaults()
    except DatabaseError:
        # A login role that may not read the configuration: dates in UTC, an
        # unchosen language named only as the dealership's default, no number.
        found = Defaults()
    _defaults_cache[id(pool)] = (now, found)
    return found


async def set_preference(pool: CallerPool, claims: Mapping[str, Any], registration_id: str,
                   pref: str, language: str | None = None) -> bool:
    """Change one registration's preference, and its messages' language when given, as the
    customer (RLS, the column grant and the guard trigger decide); False when refused."""
    if pref not in PREFERENCES or (language is not None and language not in MESSAGE_LANGUAGES):
        return False
    try:
        reg = str(uuid.UUID(registration_id))
    except (ValueError, AttributeError):
        return False
    with family_errors():
        [changed] = await run_as_caller(pool, claims, [Statement(query("portal_set_pref"), {
            "pref": pref, "set_language": language is not None, "language": language,
            "id": reg})])
    return bool(changed)
